"""Stage 6: the SLA policy and the authorized-versus-installed gaps."""

from pathlib import Path

import dagster as dg

from assets.common import STAGE6_MONITORING, key, warehouse_asset
from pipelines.policy import load_policy, policy_rows, policy_sha256
from pipelines.resources import RunSettings, WarehouseResource
from pipelines.tables import sql_table_asset
from pipelines.warehouse import replace_table, table_metadata, transaction

GAP_TYPES = (
    "authorized_missing",
    "failed_reapply",
    "pending_reboot",
    "available_unauthorized",
    "installed_unauthorized",
    "installed_rejected",
    "untested_in_production",
    "stale_assessment",
)


@warehouse_asset(
    key=key("staging.sla_policy"),
    group_name=STAGE6_MONITORING,
    kinds={"duckdb", "yaml"},
)
def sla_policy(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, run_settings: RunSettings
) -> dg.MaterializeResult:
    """The SLA policy as data: one row per framework and severity (days or months to remediate,
    which clock starts it). Project defaults in pipelines/config/sla.yaml, overridden by the
    estate's policy/sla.yaml."""
    policy = load_policy(Path(run_settings.estate_dir))
    with warehouse.get_connection() as conn, transaction(conn):
        replace_table(conn, "staging.sla_policy", policy_rows(policy))
        metadata = table_metadata(conn, "staging.sla_policy", preview_rows=20)
    return dg.MaterializeResult(
        metadata={
            **metadata,
            "policy_version": policy["version"],
            "policy_sha256": policy_sha256(policy),
        }
    )


def _gap_metadata(conn, as_of) -> dict:
    by_type = dict(
        conn.execute(
            "SELECT gap_type, count(*) FROM marts.compliance_gaps GROUP BY ALL ORDER BY ALL"
        ).fetchall()
    )
    overdue = conn.execute(
        "SELECT count(*) FROM marts.compliance_gaps WHERE days_overdue > 0"
    ).fetchall()[0][0]
    paused = conn.execute(
        "SELECT count(*) FROM marts.compliance_gaps WHERE exception_id IS NOT NULL"
    ).fetchall()[0][0]
    tiers = dict(
        conn.execute(
            "SELECT coalesce(bod2604_tier, '(none)'), count(*) FROM marts.compliance_gaps "
            "GROUP BY ALL ORDER BY ALL"
        ).fetchall()
    )
    # Which BOD 26-04 decision-table rows the open gaps reached, and on what SSVC inputs.
    rules = dict(
        conn.execute(
            "SELECT b.rule, count(*) FROM marts.compliance_gaps AS g "
            "JOIN marts.patch_bod2604 AS b ON b.patch_key = g.patch_key "
            "AND b.internet_exposed = g.internet_exposed "
            "WHERE g.bod2604_tier IS NOT NULL GROUP BY ALL ORDER BY ALL"
        ).fetchall()
    )
    ssvc_sources = dict(
        conn.execute(
            "SELECT bod2604_ssvc_source, count(*) FROM marts.compliance_gaps "
            "WHERE bod2604_tier IS NOT NULL GROUP BY ALL ORDER BY ALL"
        ).fetchall()
    )
    return {
        "overdue": dg.MetadataValue.int(overdue),
        "gaps_by_type": dg.MetadataValue.json({t: by_type.get(t, 0) for t in GAP_TYPES}),
        "gaps_under_exception": dg.MetadataValue.int(paused),
        "bod2604_tiers": dg.MetadataValue.json(tiers),
        "bod2604_rules_reached": dg.MetadataValue.json(rules),
        "bod2604_ssvc_sources": dg.MetadataValue.json(ssvc_sources),
    }


# Description, deps and the gap_ids_unique check: the header of sql/compliance_gaps.sql.
compliance_gaps = sql_table_asset(
    "marts.compliance_gaps", metadata=_gap_metadata, order_by="priority DESC, gap_id"
)
