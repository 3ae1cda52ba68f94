"""Asset jobs."""

from __future__ import annotations

import dagster as dg

from assets import common

# Everything, in dependency order: what `patchledger run` launches.
full_refresh = dg.define_asset_job(
    name="full_refresh",
    selection=dg.AssetSelection.all(),
    description="Ingest every source and rebuild every table and the evidence pack.",
)

# The daily schedule's run: new data into every table (raw ingestion and the trend are
# incremental); the evidence pack is a dated artifact written monthly or on demand
# (`patchledger report`), not every day.
daily_refresh = dg.define_asset_job(
    name="daily_refresh",
    selection=dg.AssetSelection.all() - dg.AssetSelection.groups(common.EVIDENCE),
    description="Ingest the day's new files and bring every table up to date (no evidence pack).",
)

# Bulletins only (stage 3): what the Patch Tuesday schedule launches.
bulletin_refresh = dg.define_asset_job(
    name="bulletin_refresh",
    selection=dg.AssetSelection.groups(common.STAGE3_BULLETINS).downstream(),
    description="Fetch MSRC, KEV, EPSS and OSV and rebuild the catalog and everything that reads it.",
)


# The evidence pack alone, from the marts as they stand: what the monthly schedule launches.
evidence_pack = dg.define_asset_job(
    name="evidence_pack",
    selection=dg.AssetSelection.groups(common.EVIDENCE),
    description="Write the evidence pack (HTML, PDF, populations, manifest) from the current marts.",
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
    return [full_refresh, daily_refresh, bulletin_refresh, evidence_pack, scheduled_audit]
