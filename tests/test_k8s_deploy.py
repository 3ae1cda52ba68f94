"""The Kubernetes deployment without a cluster (deploy/k8s/, pipelines/k8s.py): the code location
loads with dagster-k8s's `k8s_job_executor`; the Kubernetes Job that executor creates for one raw
ingestion step, as sent to a local fake of the Kubernetes API, carries the image, the command,
the settings and the resources the environment gives; the Helm values name the variables the
code reads."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
import yaml

pytest.importorskip("dagster_k8s", reason="dagster-k8s is not installed (pip install '.[k8s]')")

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy" / "k8s"
JOB_FILE = Path(__file__).with_name("lake_jobs.py")


def _clear_settings(monkeypatch):
    import os

    for name in list(os.environ):
        if name.startswith("PATCHLEDGER_") or name == "AZURE_STORAGE_ACCOUNT_NAME":
            monkeypatch.delenv(name)


@pytest.fixture
def settings(monkeypatch, tmp_path):
    """The code location's environment as the Helm chart would set it (local paths for the lake)."""
    _clear_settings(monkeypatch)
    values = {
        "PATCHLEDGER_EXECUTOR": "k8s",
        "PATCHLEDGER_LAKE": str(tmp_path / "lake"),
        "PATCHLEDGER_ESTATE": "/var/lib/patchledger/estate",
        "PATCHLEDGER_WAREHOUSE": "/var/lib/patchledger/warehouse.duckdb",
        "PATCHLEDGER_SOURCE": "files",
        "PATCHLEDGER_K8S_IMAGE": "registry.example/patchledger:2026.12.1",
        "PATCHLEDGER_K8S_NAMESPACE": "patchledger",
        "PATCHLEDGER_K8S_SERVICE_ACCOUNT": "patchledger-steps",
        "PATCHLEDGER_K8S_STEP_CPU": "2",
        "PATCHLEDGER_K8S_STEP_MEMORY": "6Gi",
        "AZURE_STORAGE_ACCOUNT_NAME": "patchledgerlake",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    # A secret setting: it comes from a Kubernetes Secret, not copied (not in what this returns).
    monkeypatch.setenv("PATCHLEDGER_NOTIFY_WEBHOOK", "https://hooks.example/token-123")
    return values


def test_code_location_loads_with_the_k8s_executor(settings):
    from pipelines.definitions import defs

    definitions = defs()
    for name in ("daily_refresh", "full_refresh", "evidence_pack"):
        assert definitions.resolve_job_def(name).executor_def.name == "k8s"


def test_k8s_needs_the_lake(monkeypatch):
    from pipelines.definitions import executor

    _clear_settings(monkeypatch)
    monkeypatch.setenv("PATCHLEDGER_EXECUTOR", "k8s")
    with pytest.raises(ValueError, match="PATCHLEDGER_EXECUTOR=k8s needs lake mode"):
        executor()


def test_without_dagster_k8s_the_code_location_names_the_extra(settings, monkeypatch):
    import sys

    from pipelines.definitions import executor

    monkeypatch.setitem(sys.modules, "dagster_k8s", None)  # import fails as if not installed
    with pytest.raises(ValueError, match=r"needs dagster-k8s: pip install '\.\[k8s\]'"):
        executor()


def test_executor_config_sets_only_what_the_environment_gives():
    from pipelines.k8s import executor_config

    # Nothing set: the step inherits image, namespace, account and resources; no settings to pass.
    assert executor_config({"HOME": "/root"}) == {"env_vars": []}
    # A memory size alone is requested and limited; no CPU request, and never a CPU limit.
    assert executor_config({"PATCHLEDGER_K8S_STEP_MEMORY": "8Gi", "PATCHLEDGER_LAKE": "/lake",
                            "AZURE_STORAGE_ACCOUNT_NAME": "acct", "AZURE_CLIENT_SECRET": "s"}) == {
        "env_vars": ["AZURE_STORAGE_ACCOUNT_NAME", "PATCHLEDGER_K8S_STEP_MEMORY", "PATCHLEDGER_LAKE"],
        "resources": {"requests": {"memory": "8Gi"}, "limits": {"memory": "8Gi"}},
    }
    assert executor_config({"PATCHLEDGER_K8S_STEP_CPU": "500m"})["resources"] == {
        "requests": {"cpu": "500m"}, "limits": {}}


@pytest.fixture
def kubeconfig(json_server, tmp_path):
    """A kubeconfig for a local fake of the Kubernetes API that accepts whatever is created."""
    server = json_server(lambda path: (201, {}))
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "fake",
        "clusters": [{"name": "fake", "cluster": {"server": server.url}}],
        "users": [{"name": "fake", "user": {"token": "not-a-secret"}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
    }))
    return server, str(path)


def test_step_job_for_one_raw_ingestion_step(settings, kubeconfig, tmp_path):
    """Launch one raw scan step through the executor the code location configures, as a run's pod
    does: dagster-k8s builds the Job (construct_dagster_k8s_job) and posts it to the API."""
    from dagster._core.definitions.reconstruct import ReconstructableJob
    from dagster._core.execution.api import create_execution_plan
    from dagster._core.execution.context.system import PlanData, PlanOrchestrationContext
    from dagster._core.execution.context_creation_job import create_context_free_log_manager
    from dagster._core.execution.retries import RetryMode
    from dagster._core.executor.init import InitExecutorContext
    from dagster._core.executor.step_delegating.step_handler.base import StepHandlerContext
    from dagster._core.system_config.objects import ResolvedRunConfig
    from dagster._grpc.types import ExecuteStepArgs

    server, kubeconfig_file = kubeconfig
    step = "raw__patch_operations"
    # The instance and the code location's container context as the chart makes them from
    # values.yaml (its k8sRunLauncher config; its user deployment's labels and volumes).
    values = yaml.safe_load((DEPLOY / "values.yaml").read_text())
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    pod_spec = values["runLauncher"]["config"]["k8sRunLauncher"]["runK8sConfig"]["podSpecConfig"]
    launcher = {"module": "dagster_k8s", "class": "K8sRunLauncher", "config": {
        "instance_config_map": "patchledger-instance", "dagster_home": "/opt/dagster/dagster_home",
        "load_incluster_config": False, "kubeconfig_file": kubeconfig_file, "job_namespace": "dagster",
        "service_account_name": "dagster", "run_k8s_config": {"pod_spec_config": pod_spec}}}
    context = {"k8s": {"labels": deployment["labels"], "volumes": deployment["volumes"],
                       "volume_mounts": deployment["volumeMounts"],
                       "env_secrets": [secret["name"] for secret in deployment["envSecrets"]]}}
    recon = ReconstructableJob.for_file(str(JOB_FILE), "raw_scans")
    job = recon.get_definition()
    origin = recon.get_python_origin()
    origin = origin._replace(repository_origin=origin.repository_origin._replace(container_context=context))
    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home"), overrides={"run_launcher": launcher}) as instance:
        plan = create_execution_plan(recon, step_keys_to_execute=[step])
        run = instance.create_run_for_job(job_def=job, execution_plan=plan,
                                          job_code_origin=origin)
        executor = job.executor_def.executor_creation_fn(InitExecutorContext(
            job=recon, executor_def=job.executor_def, instance=instance,
            executor_config=ResolvedRunConfig.build(job, {}).execution.execution_engine_config))
        plan_context = PlanOrchestrationContext(
            plan_data=PlanData(job=recon, dagster_run=run, instance=instance, execution_plan=plan,
                               raise_on_error=True, retry_mode=RetryMode.DISABLED),
            log_manager=create_context_free_log_manager(instance, run), executor=executor,
            output_capture=None)
        list(executor._step_handler.launch_step(StepHandlerContext(  # the executor's own handler
            instance=instance, plan_context=plan_context, steps=plan.steps,
            execute_step_args=ExecuteStepArgs(origin, run.run_id, [step]))))

    assert len(server.posted) == 1
    path, body = server.posted[0]
    assert path == "/apis/batch/v1/namespaces/patchledger/jobs"
    assert body["kind"] == "Job"
    pod = body["spec"]["template"]
    assert pod["metadata"]["labels"]["dagster/op"] == step
    assert pod["spec"]["serviceAccountName"] == "patchledger-steps"
    (container,) = pod["spec"]["containers"]
    assert container["image"] == "registry.example/patchledger:2026.12.1"
    assert container["args"] == ["dagster", "api", "execute_step"]
    assert container["resources"] == {"requests": {"cpu": "2", "memory": "6Gi"}, "limits": {"memory": "6Gi"}}
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert env["DAGSTER_RUN_STEP_KEY"] == step
    # Every setting the run was loaded with, by value, and nothing else of ours: not the webhook,
    # which the pod reads from the Secret.
    assert {"secretRef": {"name": "patchledger-secrets"}} in container["envFrom"]
    ours = {name: value for name, value in env.items()
            if name.startswith("PATCHLEDGER_") or name == "AZURE_STORAGE_ACCOUNT_NAME"}
    assert ours == settings
    assert ours["PATCHLEDGER_LAKE"] == str(tmp_path / "lake")
    # From the chart: the node pool of the disk, the workload identity label, the data volume.
    assert pod["spec"]["nodeSelector"] == {"agentpool": "patchledger"}
    assert pod["metadata"]["labels"]["azure.workload.identity/use"] == "true"
    assert pod["spec"]["volumes"] == [{"name": "patchledger-data",
                                       "persistentVolumeClaim": {"claimName": "patchledger-data"}}]
    assert container["volumeMounts"] == [{"name": "patchledger-data", "mountPath": "/var/lib/patchledger"}]


def test_helm_values_name_the_settings_the_code_reads():
    values = yaml.safe_load((DEPLOY / "values.yaml").read_text())
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    # One warehouse writer at a time, as pipelines/config/dagster.yaml.
    assert values["concurrency"]["pools"]["defaultLimit"] == 1
    assert values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]["maxConcurrentRuns"] == 1

    (deployment,) = values["dagster-user-deployments"]["deployments"]
    assert deployment["codeServerArgs"] == ["-m", "pipelines.definitions"]
    env = deployment["env"]
    assert set(env) == {
        "PATCHLEDGER_EXECUTOR", "PATCHLEDGER_LAKE", "AZURE_STORAGE_ACCOUNT_NAME", "PATCHLEDGER_SOURCE",
        "PATCHLEDGER_SUBSCRIPTIONS", "PATCHLEDGER_WORKSPACES", "PATCHLEDGER_ESTATE",
        "PATCHLEDGER_WAREHOUSE", "PATCHLEDGER_REPORTS", "PATCHLEDGER_DUCKDB_MEMORY",
        "PATCHLEDGER_K8S_STEP_CPU", "PATCHLEDGER_K8S_STEP_MEMORY",
    }
    # Each of them is read by the code (a renamed variable would leave the chart setting nothing).
    source = "\n".join(p.read_text() for p in (ROOT / "pipelines").rglob("*.py"))
    for name in env:
        assert f'"{name}"' in source, name
    assert env["PATCHLEDGER_EXECUTOR"] == "k8s"
    assert env["PATCHLEDGER_LAKE"].startswith("abfs://")
    assert env["PATCHLEDGER_SOURCE"] == "azure"
    # DuckDB's limit (12 GB = 11.2 GiB) stays below the step pod's (16 GiB): it spills, not killed.
    assert (env["PATCHLEDGER_DUCKDB_MEMORY"], env["PATCHLEDGER_K8S_STEP_MEMORY"]) == ("12GB", "16Gi")

    # The warehouse, the estate and the reports are on the data volume, the disk of data-pvc.yaml.
    (mount,) = deployment["volumeMounts"]
    (volume,) = deployment["volumes"]
    assert mount["name"] == volume["name"]
    for name in ("PATCHLEDGER_WAREHOUSE", "PATCHLEDGER_ESTATE", "PATCHLEDGER_REPORTS"):
        assert env[name].startswith(mount["mountPath"] + "/"), name
    claim = yaml.safe_load((DEPLOY / "data-pvc.yaml").read_text())
    assert volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    # A ReadWriteOnce disk: runs and steps go to the node pool of the code server.
    pool = deployment["nodeSelector"]
    assert values["runLauncher"]["config"]["k8sRunLauncher"]["runK8sConfig"]["podSpecConfig"]["nodeSelector"] == pool

    # Workload identity: the pods are labelled for it and their service account names the identity.
    assert deployment["labels"] == {"azure.workload.identity/use": "true"}
    account = values["dagster-user-deployments"]["serviceAccount"]
    assert "azure.workload.identity/client-id" in account["annotations"]
