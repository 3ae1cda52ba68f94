"""The bulletin channels' freshness: marts.bulletin_channels and its checks."""

import dagster as dg

from assets.common import (
    EVALUATION_DATE_SOURCE,
    STAGE3_BULLETINS,
    key,
    warehouse_asset,
)
from pipelines.resources import RunSettings, WarehouseResource
from pipelines.sources.bulletins import INGEST_LOG_DDL
from pipelines.sources.bulletins.resource import BulletinWatch
from pipelines.sources.epss.assets import EPSS_DDL
from pipelines.sources.kev.assets import KEV_DDL
from pipelines.sources.msrc import KNOWN_EMPTY_DOCUMENTS
from pipelines.sources.msrc.assets import (
    INDEX_TABLE,
    MSRC_TABLES,
    ensure_index_table,
    ensure_msrc_tables,
)
from pipelines.sources.msrc.resource import MsrcResource
from pipelines.sources.osv.assets import OSV_TABLES, ensure_osv_tables
from pipelines.sources.vulnrichment.assets import VULNRICHMENT_TABLE, ensure_vulnrichment_table
from pipelines.warehouse import build_table, resolve_as_of, table_metadata, transaction


def bulletin_channels_fresh(conn) -> dg.AssetCheckResult:
    """Every configured bulletin channel holds data no older than its threshold
    (msrc 35 days, kev 7, epss 3, osv 30, vulnrichment 30) as of the evaluation date."""
    rows = conn.execute(
        "SELECT channel, status, age_days, stale_after_days, newest_document "
        "FROM marts.bulletin_channels WHERE stale ORDER BY channel"
    ).fetchall()
    return dg.AssetCheckResult(
        check_name="bulletin_channels_fresh",
        passed=not rows,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "stale_channels": dg.MetadataValue.json(
                [
                    {"channel": c, "status": s, "age_days": a, "stale_after_days": t, "newest": n}
                    for c, s, a, t, n in rows
                ]
            )
        },
    )


def msrc_months_ingested(conn) -> dg.AssetCheckResult:
    """Every MSRC month that the /updates index lists as released (within the ingested span) is
    ingested at its current revision. Passes when no index is held."""
    rows = conn.execute(
        "SELECT pending_documents FROM marts.bulletin_channels WHERE channel = 'msrc'"
    ).fetchall()
    pending = (rows[0][0] if rows else None) or []
    return dg.AssetCheckResult(
        check_name="msrc_months_ingested",
        passed=not pending,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"pending_documents": dg.MetadataValue.json(pending), "count": len(pending)},
    )


@warehouse_asset(
    key=key("marts.bulletin_channels"),
    group_name=STAGE3_BULLETINS,
    kinds={"duckdb", "sql"},
    deps=[
        key(t)
        for t in (
            *MSRC_TABLES.values(), *OSV_TABLES.values(), "raw.kev_vulnerabilities",
            "raw.epss_scores", INDEX_TABLE, VULNRICHMENT_TABLE,
        )
    ] + [EVALUATION_DATE_SOURCE],
    description="One row per configured bulletin channel (msrc, kev, epss, osv, vulnrichment): last successful "
    "ingest, documents and rows held, newest document, staleness as of the evaluation date, and "
    "the MSRC months released but not yet ingested.",
    # Evaluated in this step, on its connection.
    check_specs=[dg.AssetCheckSpec(check.__name__, asset=key("marts.bulletin_channels"), description=check.__doc__)
                 for check in (bulletin_channels_fresh, msrc_months_ingested)],
)
def bulletin_channels(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, run_settings: RunSettings,
    bulletin_watch: BulletinWatch, msrc_api: MsrcResource,
) -> dg.MaterializeResult:
    with warehouse.get_connection() as conn, transaction(conn):
        # A channel never ingested still gets its row: make every input exist.
        ensure_msrc_tables(conn)
        ensure_osv_tables(conn)
        ensure_index_table(conn)
        ensure_vulnrichment_table(conn)
        conn.execute(KEV_DDL)
        conn.execute(EPSS_DDL)
        conn.execute(INGEST_LOG_DDL)
        as_of = resolve_as_of(conn, run_settings.as_of_date())
        build_table(
            conn,
            "marts.bulletin_channels",
            "bulletin_channels",
            params={
                "as_of": as_of,
                "channels": bulletin_watch.chosen(),
                "msrc_months": msrc_api.months,
                "known_empty": sorted(KNOWN_EMPTY_DOCUMENTS),
            },
        )
        metadata = table_metadata(conn, "marts.bulletin_channels", order_by="channel")
        stale = [
            r[0]
            for r in conn.execute(
                "SELECT channel FROM marts.bulletin_channels WHERE stale ORDER BY channel"
            ).fetchall()
        ]
        checks = [bulletin_channels_fresh(conn), msrc_months_ingested(conn)]
    metadata["as_of"] = dg.MetadataValue.text(as_of.isoformat())
    metadata["stale_channels"] = dg.MetadataValue.json(stale)
    return dg.MaterializeResult(metadata=metadata, check_results=checks)

