"""Live mode: a fresh assessment (assessPatches) of every VM, through the official SDK
(azure-mgmt-compute), each result kept as a patch operation envelope for the offline reader.

assessPatches only triggers an assessment; it runs on request (PATCHLEDGER_ASSESS_PATCHES=true),
never by default. installPatches changes machines, so live mode never calls it.
"""

from __future__ import annotations

import logging
from pathlib import Path

from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from azure.mgmt.compute import ComputeManagementClient

from pipelines.ingest import azure
from pipelines.ingest.azure import STAMP, AzureAccess, reading, resource_group, write_json

from . import FOLDER


def assess_patches(
    access: AzureAccess,
    subscriptions: list[str],
    estate: Path,
    log: logging.Logger | None = None,
) -> int:
    """Run assessPatches on every VM of the subscriptions and keep each result as a patch
    operation envelope. All assessments start before the first is awaited, so they run in
    parallel; a VM that cannot be assessed (stopped, no agent) is logged and skipped."""
    stamp = azure.utc_now().strftime(STAMP)
    written = 0
    for subscription in subscriptions:
        what = f"Azure Compute assessPatches, subscription {subscription}"
        with (
            reading(what),
            ComputeManagementClient(access.credential, subscription, **access.client_kwargs) as client,
        ):
            pollers = []
            for vm in client.virtual_machines.list_all():
                try:
                    poller = client.virtual_machines.begin_assess_patches(
                        resource_group(vm.id), vm.name
                    )
                    pollers.append((vm, poller))
                except ClientAuthenticationError:
                    raise
                except HttpResponseError as exc:
                    if log is not None:
                        log.warning(f"{what}: {vm.name} not assessed: HTTP {exc.status_code}")
            for vm, poller in pollers:
                try:
                    result = poller.result()
                except ClientAuthenticationError:
                    raise
                except HttpResponseError as exc:
                    if log is not None:
                        log.warning(f"{what}: {vm.name} assessment failed: HTTP {exc.status_code}")
                    continue
                envelope = {"resourceId": vm.id, "operation": "assessPatches", "result": result}
                write_json(
                    estate.joinpath(*FOLDER) / f"{vm.name}-assessPatches-{stamp}.json",
                    envelope,
                )
                written += 1
    return written
