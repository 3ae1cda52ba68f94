"""Column comments of the raw tables, from pipelines/config/raw_columns.yaml.

Raw tables are rewritten (CREATE OR REPLACE, lake views) by many loaders, which drops their
comments: warehouse.table_metadata puts them back on the table it describes, and the
publication step (assets/publish.py) on every raw table after each successful run.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import duckdb
import yaml

CONFIG = Path(__file__).parent / "config" / "raw_columns.yaml"
LOG_ANALYTICS = ("la_update", "la_update_summary", "la_update_run_progress")


@cache
def _config() -> dict:
    return yaml.safe_load(CONFIG.read_text(encoding="utf-8"))


def column_comment(table: str, column: str) -> str | None:
    """The comment of raw.<table>.<column>: the table's own entry, else Log Analytics', else common."""
    config = _config()
    own = (config["tables"].get(table) or {}).get(column)
    shared = config["log_analytics"].get(column) if table in LOG_ANALYTICS else None
    return own or shared or config["common"].get(column)


def comment_raw_columns(conn: duckdb.DuckDBPyConnection, table: str) -> None:
    """COMMENT ON every column of raw.<table> that has a comment in the configuration."""
    from pipelines.warehouse import sql_literal

    name = table.split(".", 1)[1]
    columns = conn.execute(
        "SELECT column_name, comment FROM duckdb_columns() WHERE schema_name = 'raw' AND table_name = ?",
        [name]).fetchall()
    for column, current in columns:
        text = column_comment(name, column)
        if text and text != current:
            conn.execute(f'COMMENT ON COLUMN {table}."{column}" IS {sql_literal(text)}')


def comment_all_raw(conn: duckdb.DuckDBPyConnection) -> None:
    """comment_raw_columns for every raw table and view, and a table comment where it has none."""
    from pipelines.warehouse import sql_literal

    names = conn.execute(
        "SELECT table_name, 'TABLE', comment FROM duckdb_tables() WHERE schema_name = 'raw' UNION ALL "
        "SELECT view_name, 'VIEW', comment FROM duckdb_views() WHERE schema_name = 'raw' ORDER BY 1").fetchall()
    for name, kind, current in names:
        comment_raw_columns(conn, f"raw.{name}")
        text = _config()["table_comments"].get(name)
        if text and not current:
            conn.execute(f"COMMENT ON {kind} raw.{name} IS {sql_literal(text)}")
