"""docs/warehouse.md: the warehouse's tables and columns, generated from their DuckDB comments."""

from __future__ import annotations

import duckdb

HEADER = """# The warehouse

Generated from the DuckDB comments of a demo warehouse by `patchledger schema-doc`; do not edit
by hand. Analysts open the published read-only copy, replaced after each successful run
(`duckdb.connect("data/warehouse-read.duckdb", read_only=True)`): DuckDB admits one writer, and a
reader that holds the live file blocks scheduled runs, while one on the copy never does.

Schemas: `raw` (as received, with source file, SHA-256 and ingest run), `staging` (normalized),
`marts` (what analysts and reports read), `ledger` (append-only evidence).
"""


def schema_markdown(conn: duckdb.DuckDBPyConnection, schemas: tuple[str, ...] = ("marts", "ledger")) -> str:
    parts = [HEADER]
    tables = conn.execute(
        "SELECT schema_name, table_name, comment FROM duckdb_tables() "
        "WHERE schema_name IN (SELECT unnest(?)) ORDER BY schema_name, table_name",
        [list(schemas)],
    ).fetchall()
    for schema, table, comment in tables:
        parts.append(f"\n## `{schema}.{table}`\n\n{(comment or '').strip()}\n")
        parts.append("| column | type | meaning |\n|---|---|---|")
        for name, data_type, column_comment in conn.execute(
            "SELECT column_name, data_type, comment FROM duckdb_columns() "
            "WHERE schema_name = ? AND table_name = ? ORDER BY column_index",
            [schema, table],
        ).fetchall():
            text = (column_comment or "").replace("|", "\\|").replace("\n", " ")
            parts.append(f"| `{name}` | {data_type} | {text} |")
    return "\n".join(parts) + "\n"
