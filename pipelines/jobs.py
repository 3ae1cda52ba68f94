"""Asset jobs."""

from __future__ import annotations

import dagster as dg

from assets import common

# The month-end packs are partitioned by month and rebuild their own scratch warehouse: they
# run in their own job, not in the unpartitioned ones.
MONTH_END_PACK = dg.AssetSelection.assets(common.key("reports.month_end_pack"))

# Everything, in dependency order: what `patchledger run` launches. The jobs that hold the
# daily-partitioned assets (pipelines/partitions.py) run for the days a run names: `patchledger
# run` the days new or changed files are dated, the daily schedule the day just ended, a backfill
# of every partition a full rebuild.
full_refresh = dg.define_asset_job(
    name="full_refresh",
    selection=dg.AssetSelection.all() - MONTH_END_PACK,
    description="Ingest every source and rebuild every table and the evidence pack.",
)

# The daily schedule's run: new data into every table (raw ingestion and the trend are
# incremental); the evidence pack is a dated artifact written monthly or on demand
# (`patchledger report`), not every day.
daily_refresh = dg.define_asset_job(
    name="daily_refresh",
    selection=dg.AssetSelection.all() - dg.AssetSelection.groups(common.EVIDENCE) - MONTH_END_PACK,
    description="Ingest the day's new files and bring every table up to date (no evidence pack).",
)

# Bulletins only (stage 3): what the Patch Tuesday schedule launches.
bulletin_refresh = dg.define_asset_job(
    name="bulletin_refresh",
    selection=dg.AssetSelection.groups(common.STAGE3_BULLETINS).downstream(),
    description="Fetch MSRC, KEV, EPSS, OSV and CISA Vulnrichment and rebuild the catalog and everything that reads it.",
)


# The evidence pack alone, from the marts as they stand (for their own date only).
evidence_pack = dg.define_asset_job(
    name="evidence_pack",
    selection=dg.AssetSelection.groups(common.EVIDENCE) - MONTH_END_PACK,
    description="Write the evidence pack (HTML, PDF, populations, manifest) from the current marts.",
)

# The pack for the last day of a month, one partition per month: what the monthly schedule
# launches (for the month just ended) and what a backfill of past months runs.
month_end_evidence_pack = dg.define_asset_job(
    name="month_end_evidence_pack",
    selection=MONTH_END_PACK,
    description="Write the evidence pack for the last day of the partition's month, rebuilt as of that day.",
)


# The audit of installed versus authorized (stage 6), with everything it reads.
scheduled_audit = dg.define_asset_job(
    name="scheduled_audit",
    # Whole multi-assets: a multi-asset upstream of the audit cannot run in part.
    selection=dg.AssetSelection.assets(common.key("marts.audit_findings"))
    .upstream()
    .required_multi_asset_neighbors()
    | dg.AssetSelection.assets(common.key("published.warehouse")),
    description="Rebuild the audit findings of installed versus authorized, and their inputs.",
)


def all_jobs() -> list:
    return [full_refresh, daily_refresh, bulletin_refresh, evidence_pack, scheduled_audit,
            month_end_evidence_pack]
