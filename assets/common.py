"""Shared settings for every asset: groups by stage, owners, the DuckDB writer pool."""

from __future__ import annotations

import functools

import dagster as dg

from pipelines.lake import lake_root
from pipelines.partitions import DAILY, SINGLE_RUN

# One group per stage of the process (product.md, "The six stages"), plus the evidence pack.
STAGE1_INVENTORY = "stage1_patch_inventory"
STAGE2_BASELINES = "stage2_vm_baselining"
STAGE3_BULLETINS = "stage3_notification_channels"
STAGE4_UPDATE_SERVERS = "stage4_patch_management_system"
STAGE5_AUTHORIZATION = "stage5_testing_authorization"
STAGE6_MONITORING = "stage6_patch_monitoring"
EVIDENCE = "evidence_pack"
# The read-only copy of the warehouse for analysts, after every table of a run (assets/publish.py).
PUBLICATION = "analyst_copy"

OWNERS = ["team:patch-compliance"]
DUCKDB_POOL = "duckdb"

# Every asset that opens the warehouse for writing goes through this decorator: one pool,
# one owner, DuckDB kind. Keys mirror warehouse coordinates: ["marts", "patch_catalog"].
warehouse_asset = functools.partial(dg.asset, pool=DUCKDB_POOL, owners=OWNERS)
# In lake mode (pipelines/lake.py) the raw scan assets write Parquet and hold the warehouse file
# only for a moment (lock retried), so they run outside the one-writer pool and can fan out over
# processes; otherwise they are warehouse writers like the rest.
# They are partitioned by day (pipelines/partitions.py), a backfill of many days being one run.
raw_scan_asset = functools.partial(dg.asset, pool=None if lake_root() else DUCKDB_POOL, owners=OWNERS,
                                   partitions_def=DAILY, backfill_policy=SINGLE_RUN)
# Checks read the warehouse: same pool, so a check never races a writer for the file.
warehouse_check = functools.partial(dg.asset_check, pool=DUCKDB_POOL)


# The default evaluation date is the day of the newest observation (pipelines.warehouse
# .resolve_as_of): every asset whose SQL takes $as_of depends on the observations, so that it
# never runs before them and falls back to the clock.
EVALUATION_DATE_SOURCE = dg.AssetKey(["staging", "patch_observations"])


def key(table: str) -> dg.AssetKey:
    """The asset key of a warehouse table named 'schema.table'."""
    return dg.AssetKey(table.split("."))
