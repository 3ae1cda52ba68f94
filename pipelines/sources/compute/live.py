"""Live mode: every VM of the subscriptions with its instance view, through the official SDK
(azure-mgmt-compute), written as one dated ARM list body for the offline reader."""

from __future__ import annotations

import logging
from pathlib import Path

from azure.core.exceptions import ResourceNotFoundError
from azure.mgmt.compute import ComputeManagementClient

from pipelines.ingest import azure
from pipelines.ingest.azure import STAMP, AzureAccess, reading, resource_group, write_json

from . import VM_SNAPSHOT_DIR


def fetch_virtual_machines(
    access: AzureAccess,
    subscriptions: list[str],
    estate: Path,
    log: logging.Logger | None = None,
) -> int:
    """Every VM of the subscriptions with its instance view (power state, OS name and version,
    patch status), written as one ARM list body to azure/virtual_machines/virtual_machines-<time>.json."""
    machines = []
    for subscription in subscriptions:
        what = f"Azure Compute, subscription {subscription}"
        with (
            reading(what),
            ComputeManagementClient(access.credential, subscription, **access.client_kwargs) as client,
        ):
            vms = [vm for page in client.virtual_machines.list_all().by_page() for vm in page]
            for vm in vms:
                resource = vm.as_dict()
                try:
                    view = client.virtual_machines.instance_view(resource_group(vm.id), vm.name)
                except ResourceNotFoundError:
                    # Deleted between the list and this call: keep what the list returned.
                    if log is not None:
                        log.warning(f"{what}: {vm.name} disappeared before its instance view")
                else:
                    resource.setdefault("properties", {})["instanceView"] = view.as_dict()
                machines.append(resource)
    # One dated snapshot per run (VM_SNAPSHOT_NAME): the configuration history
    # (marts.vm_config_history) is built from the sequence.
    stamp = azure.utc_now().strftime(STAMP)
    write_json(estate.joinpath(*VM_SNAPSHOT_DIR) / f"virtual_machines-{stamp}.json", {"value": machines})
    return len(machines)
