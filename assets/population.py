"""Stage 6, population completeness: the rows Azure Resource Graph said each query had, beside
the rows fetched and loaded, so an auditor can see the population is the one Azure reported."""

from pathlib import Path

import dagster as dg

from assets.common import STAGE6_MONITORING, key, warehouse_asset, warehouse_check
from pipelines.resources import RunSettings, WarehouseResource
from pipelines.sources.resource_graph.reader import resource_graph_population_files
from pipelines.warehouse import build_table, table_metadata, transaction

TABLE = "marts.azure_population_counts"


@warehouse_asset(
    key=key(TABLE),
    group_name=STAGE6_MONITORING,
    kinds={"duckdb", "sql"},
    deps=[key("raw.patch_assessment_resources"), key("raw.patch_installation_resources")],
)
def azure_population_counts(warehouse: WarehouseResource, run_settings: RunSettings) -> dg.MaterializeResult:
    """Per Resource Graph file: rows Azure reported (totalRecords), rows in the file, rows loaded."""
    with warehouse.get_connection() as conn, transaction(conn):
        resource_graph_population_files(conn, Path(run_settings.estate_dir))
        build_table(conn, TABLE)
        incomplete = conn.execute(f"SELECT count(*) FROM {TABLE} WHERE NOT complete").fetchall()[0][0]
        metadata = table_metadata(conn, TABLE, order_by="arg_table, source_file")
    return dg.MaterializeResult(metadata={**metadata, "incomplete_files": dg.MetadataValue.int(incomplete)})


@warehouse_check(asset=key(TABLE), blocking=True)
def resource_graph_population_complete(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    """Every file that carries Azure's totalRecords holds and loaded exactly that many rows."""
    with warehouse.get_connection() as conn:
        rows = conn.execute(
            f"SELECT source_file, reported_rows, fetched_rows, loaded_rows FROM {TABLE} "
            "WHERE NOT complete ORDER BY source_file"
        ).fetchall()
    return dg.AssetCheckResult(
        passed=not rows,
        metadata={
            "incomplete_files": len(rows),
            "files": dg.MetadataValue.json(
                [{"source_file": f, "reported": r, "fetched": c, "loaded": n} for f, r, c, n in rows[:20]]
            ),
        },
    )
