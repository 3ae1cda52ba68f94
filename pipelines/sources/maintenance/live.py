"""Live mode: maintenance configurations and configuration assignments of each subscription,
through the official SDK (azure-mgmt-maintenance), written as one dated ARM list body
azure/maintenance/maintenance-<YYYYMMDDTHHMMSSZ>.json that the offline reader loads.

Credentials, transport and retries come from the same `AzureAccess` as the other live
sources (pipelines/ingest/azure.py); errors name the service and the subscription.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from azure.mgmt.maintenance import MaintenanceManagementClient

from pipelines.ingest.azure import STAMP, AzureAccess, reading, utc_now, write_json

from .reader import FOLDER


def fetch_maintenance(
    access: AzureAccess, subscriptions: list[str], estate: Path, now: datetime | None = None
) -> int:
    """Every maintenance configuration and every configuration assignment (GET
    /subscriptions/{s}/providers/Microsoft.Maintenance/maintenanceConfigurations and
    .../configurationAssignments) of the subscriptions; returns the number of resources."""
    resources: list[dict] = []
    for subscription in subscriptions:
        with MaintenanceManagementClient(access.credential, subscription, **access.client_kwargs) as client:
            with reading(f"Azure Maintenance configurations, subscription {subscription}"):
                resources += [c.serialize(keep_readonly=True) for c in client.maintenance_configurations.list()]
            with reading(f"Azure Maintenance configuration assignments, subscription {subscription}"):
                resources += [
                    a.serialize(keep_readonly=True)
                    for a in client.configuration_assignments_within_subscription.list()
                ]
    stamp = (now or utc_now()).strftime(STAMP)
    write_json(estate.joinpath(*FOLDER) / f"maintenance-{stamp}.json", {"value": resources})
    return len(resources)
