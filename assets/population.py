"""Stage 6, population completeness: the rows Azure Resource Graph said each query had, beside
the rows fetched and loaded, so an auditor can see the population is the one Azure reported."""

from pathlib import Path

import dagster as dg

from pipelines.resources import RunSettings
from pipelines.sources.resource_graph.reader import resource_graph_population_files
from pipelines.tables import TableCheck, sql_table_asset

TABLE = "marts.azure_population_counts"


def _population_files(conn, run_settings: RunSettings) -> None:
    resource_graph_population_files(conn, Path(run_settings.estate_dir), verify=run_settings.verify_files)


def _incomplete(conn, as_of) -> dict:
    incomplete = conn.execute(f"SELECT count(*) FROM {TABLE} WHERE NOT complete").fetchall()[0][0]
    return {"incomplete_files": dg.MetadataValue.int(incomplete)}


def _complete(conn) -> dg.AssetCheckResult:
    """Every file that carries Azure's totalRecords holds and loaded exactly that many rows."""
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


# Description and deps: the header of sql/azure_population_counts.sql. `before` reads the
# estate's files: the build never skips. The blocking check runs in the same step.
azure_population_counts = sql_table_asset(
    TABLE, before=_population_files, metadata=_incomplete, order_by="arg_table, source_file",
    checks=[TableCheck("resource_graph_population_complete", _complete, blocking=True,
                       description=_complete.__doc__)],
)
