"""The Dagster code location: every asset, check, job, schedule and sensor of PatchLedger.

The UI (`make ui`), `patchledger run` and the tests all load this one `Definitions`.
Runs execute in process: DuckDB admits one writer process per file.
"""

from __future__ import annotations

import dagster as dg

import assets
from pipelines import jobs, resources, schedules, sensors


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(
        assets=dg.load_assets_from_package_module(assets),
        asset_checks=dg.load_asset_checks_from_package_module(assets),
        jobs=jobs.all_jobs(),
        schedules=schedules.all_schedules(),
        sensors=sensors.all_sensors(),
        resources=resources.default_resources(),
        executor=dg.in_process_executor,
    )
