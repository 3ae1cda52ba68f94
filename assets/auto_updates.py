"""The automatic-updates control: no production machine installs updates on its own.

Each machine's patch settings over time (marts.vm_config_history) and its maintenance-
configuration assignment are judged per OS (docs/estate.md, "Automatic updates in production");
the periods in which a production machine could update itself, the installs in those periods and
the findings follow. The policy (production environments and scopes, approved exceptions) is
pipelines/config/automatic_updates.yaml, overridable from the estate's policy/.
"""

from pathlib import Path

import dagster as dg

from assets.common import (
    STAGE6_MONITORING,
    key,
)
from pipelines.auto_updates import load_auto_update_policy, write_policy_tables
from pipelines.resources import RunSettings, WarehouseResource
from pipelines.tables import TableCheck, sql_table_asset
from pipelines.warehouse import build_table, resolve_as_of, table_metadata, transaction


@dg.multi_asset(
    specs=[
        dg.AssetSpec(key("staging.auto_update_policy"), group_name=STAGE6_MONITORING,
                     owners=["team:patch-compliance"], kinds={"duckdb", "yaml"}),
        dg.AssetSpec(key("staging.auto_update_exceptions"), group_name=STAGE6_MONITORING,
                     owners=["team:patch-compliance"], kinds={"duckdb", "yaml"}),
    ],
    pool="duckdb",
)
def auto_update_policy(warehouse: WarehouseResource, run_settings: RunSettings):
    """The automatic-updates policy as data: production environments and scopes (one row) and
    the approved exceptions, from pipelines/config/automatic_updates.yaml and the estate's
    policy/automatic_updates.yaml."""
    policy, where = load_auto_update_policy(Path(run_settings.estate_dir))
    with warehouse.get_connection() as conn, transaction(conn):
        write_policy_tables(conn, policy, where)
        results = [(t, table_metadata(conn, t)) for t in ("staging.auto_update_policy", "staging.auto_update_exceptions")]
    for table, metadata in results:
        yield dg.MaterializeResult(asset_key=key(table), metadata={**metadata, "policy_file": Path(where).name})


def _build(conn, table: str, run_settings: RunSettings) -> dict:
    as_of = resolve_as_of(conn, run_settings.as_of_date())
    build_table(conn, table, params={"as_of": as_of})
    return {**table_metadata(conn, table), "as_of": as_of.isoformat()}


def _machines_by_status(conn, as_of) -> dict:
    by_status = dict(conn.execute(
        "SELECT status, count(DISTINCT vm_id) FROM marts.auto_update_periods GROUP BY ALL ORDER BY ALL"
    ).fetchall())
    return {"machines_by_status": dg.MetadataValue.json(by_status)}


def no_automatic_updates_in_production(conn) -> dg.AssetCheckResult:
    """Warn when a production machine can install updates on its own, or its setting cannot be
    judged, on the evaluation date (the latest period of each machine); counts per environment."""
    rows = conn.execute(
        "SELECT coalesce(environment, '(scope)'), status, count(*) FROM ("
        "  SELECT * FROM marts.auto_update_periods QUALIFY row_number() OVER "
        "  (PARTITION BY vm_id ORDER BY valid_from DESC NULLS LAST) = 1) "
        "WHERE status IN ('violation', 'unverified') GROUP BY ALL ORDER BY ALL"
    ).fetchall()
    violations = sum(n for _, status, n in rows if status == "violation")
    unverified = sum(n for _, status, n in rows if status == "unverified")
    return dg.AssetCheckResult(
        passed=violations == 0 and unverified == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "self_updating_production_machines": violations,
            "unverified_production_machines": unverified,
            "by_environment": dg.MetadataValue.json({f"{env}/{status}": n for env, status, n in rows}),
        },
    )


# Descriptions and deps: the headers of the sql/ files of the same names; the check runs in
# the periods' step.
auto_update_periods = sql_table_asset(
    "marts.auto_update_periods", metadata=_machines_by_status,
    checks=[TableCheck("no_automatic_updates_in_production", no_automatic_updates_in_production,
                       description=no_automatic_updates_in_production.__doc__)])
auto_update_installs = sql_table_asset("marts.auto_update_installs")
auto_update_findings = sql_table_asset("marts.auto_update_findings")
