"""The Dagster code location: every asset, check, job, schedule and sensor of PatchLedger.

The UI (`make ui`), `patchledger run` and the tests all load this one `Definitions`.
Runs execute in process: DuckDB admits one writer process per file. In lake mode
(PATCHLEDGER_LAKE, pipelines/lake.py) PATCHLEDGER_EXECUTOR=multiprocess runs the raw ingestion
steps in parallel processes, and PATCHLEDGER_EXECUTOR=k8s in their own Kubernetes pods
(pipelines/k8s.py, deploy/k8s/); the `duckdb` pool (limit 1, config/dagster.yaml) still admits one
warehouse writer at a time.
"""

from __future__ import annotations

import os

import dagster as dg

import assets
from assets.publish import published_warehouse
from pipelines import jobs, resources, schedules, sensors, sources
from pipelines.lake import LAKE_ENV, lake_root
from pipelines.tables import grouped

# Where assets and checks are found: the stages (`assets/`) and one folder per source
# (`pipelines/sources/<source>/`, every module of it). A new source needs no line here.
ASSET_PACKAGES = (assets, sources)


def executor() -> dg.ExecutorDefinition:
    # Read when the definitions load, not through a resource: the executor is part of them.
    name = os.environ.get("PATCHLEDGER_EXECUTOR", "in_process")
    if name == "in_process":
        return dg.in_process_executor
    if name not in ("multiprocess", "k8s"):
        raise ValueError(f"PATCHLEDGER_EXECUTOR must be 'in_process', 'multiprocess' or 'k8s', not {name!r}")
    if not lake_root():
        raise ValueError(f"PATCHLEDGER_EXECUTOR={name} needs lake mode ({LAKE_ENV}): without it "
                         "every step writes the one DuckDB file and nothing can run in parallel")
    if name == "k8s":
        from pipelines.k8s import k8s_executor  # dagster-k8s is an optional dependency

        return k8s_executor()
    return dg.multiprocess_executor


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions(resources.default_resources())


def load_packages(packages) -> dict:
    """package -> its assets; a package that loads none is an error."""
    loaded = {package: dg.load_assets_from_package_module(package) for package in packages}
    empty = [package.__name__ for package, found in loaded.items() if not found]
    if empty:
        # A stray package of the same name earlier on sys.path would otherwise load nothing, silently.
        raise RuntimeError(f"no assets found in package {', '.join(empty)} "
                           f"({', '.join(str(p.__file__) for p in packages)})")
    return loaded


def build_definitions(run_resources: dict) -> dg.Definitions:
    """The code location with the given resources (a past-date rebuild points them elsewhere)."""
    loaded = load_packages(ASSET_PACKAGES)
    # The SQL-header factory's tables build several to a step (pipelines/tables.py, `grouped`).
    tables = grouped([a for found in loaded.values() for a in found])
    # The analysts' read-only copy comes after every warehouse table (not after the packs).
    written = [k for a in tables for k in a.keys if k.path[0] in resources.SCHEMAS]
    return dg.Definitions(
        assets=[*tables, published_warehouse(written)],
        asset_checks=[check for package in ASSET_PACKAGES
                      for check in dg.load_asset_checks_from_package_module(package)],
        jobs=jobs.all_jobs(),
        schedules=schedules.all_schedules(),
        sensors=sensors.all_sensors(),
        resources=run_resources,
        executor=executor(),
    )
