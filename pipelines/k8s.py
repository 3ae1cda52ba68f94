"""The Kubernetes executor (PATCHLEDGER_EXECUTOR=k8s, deploy/k8s/): every step of a run is its own
Kubernetes Job, launched by dagster-k8s's `k8s_job_executor` from the run's pod.

It is configured from the environment of the code location, as the Helm chart sets it
(deploy/k8s/values.yaml). What is not set here is inherited from the K8sRunLauncher and the code
location's container context (namespace, service account, volumes, labels); a step whose image is
not set runs in the image the code location was loaded from.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import dagster as dg

# Environment variable -> the executor's config field it sets.
K8S_SETTINGS = {
    "PATCHLEDGER_K8S_IMAGE": "job_image",
    "PATCHLEDGER_K8S_NAMESPACE": "job_namespace",
    "PATCHLEDGER_K8S_SERVICE_ACCOUNT": "service_account_name",
}
# Each step's pod: CPU requested, memory requested and limited (DuckDB's memory_limit,
# PATCHLEDGER_DUCKDB_MEMORY, must stay below it: it spills to disk rather than being killed).
STEP_CPU = "PATCHLEDGER_K8S_STEP_CPU"
STEP_MEMORY = "PATCHLEDGER_K8S_STEP_MEMORY"
# Read by adlfs for an abfs:// lake besides the PATCHLEDGER_ settings.
PASSED_AZURE = ("AZURE_STORAGE_ACCOUNT_NAME",)
# Not copied: a webhook URL often carries its token, and copied values are written into the Job's
# spec. It reaches the step from a Kubernetes Secret instead (the chart's `envSecrets`).
SECRET_SETTINGS = ("PATCHLEDGER_NOTIFY_WEBHOOK",)


def step_env_vars(environ: Mapping[str, str]) -> list[str]:
    """The variables a step's pod receives from the run's pod, by name (dagster-k8s copies their
    values when it launches the step): a step loads the same code location, so it needs every
    setting the run was loaded with (warehouse, estate, lake, source, as-of date...)."""
    return sorted(name for name in environ
                  if (name.startswith("PATCHLEDGER_") or name in PASSED_AZURE)
                  and name not in SECRET_SETTINGS)


def executor_config(environ: Mapping[str, str]) -> dict:
    """The `k8s_job_executor` config the environment gives."""
    config: dict = {field: environ[name] for name, field in K8S_SETTINGS.items() if environ.get(name)}
    config["env_vars"] = step_env_vars(environ)
    requests = {key: environ[name] for key, name in (("cpu", STEP_CPU), ("memory", STEP_MEMORY))
                if environ.get(name)}
    if requests:
        # No CPU limit: a throttled step only runs slower, a step over its memory is killed.
        limits = {"memory": requests["memory"]} if "memory" in requests else {}
        config["resources"] = {"requests": requests, "limits": limits}
    return config


def k8s_executor() -> dg.ExecutorDefinition:
    try:
        from dagster_k8s import k8s_job_executor
    except ImportError as error:
        raise ValueError("PATCHLEDGER_EXECUTOR=k8s needs dagster-k8s: pip install '.[k8s]'") from error
    return k8s_job_executor.configured(executor_config(os.environ), name="k8s")
