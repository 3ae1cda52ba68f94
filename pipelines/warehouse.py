"""Running the SQL in sql/, loading data in bulk, and describing tables to Dagster and DuckDB.

Conventions (see docs/architecture.md):
- one file `sql/<name>.sql` per derived table, a single SELECT with `$name` parameters;
- its header documents the table: `-- @table <text>` and `-- @column <name>: <text>` lines,
  which become DuckDB COMMENTs and Dagster column descriptions;
- every write happens inside `transaction(conn)`, so a failure keeps the last good state.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import cache
from typing import Any

import dagster as dg
import duckdb

from pipelines.settings import SQL_DIR

_TABLE_NAME = re.compile(r"^[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*$")

# Set by the benchmark to record (table, sql_name, params, seconds) of every build_table call.
sql_timing_recorder: Callable[[str, str, dict, float], None] | None = None


def _checked(table: str) -> str:
    if not _TABLE_NAME.match(table):
        raise ValueError(f"not a schema-qualified table name: {table!r}")
    return table


# Functions shared by the SQL files, defined once here and created on every connection that
# runs them. source_rank: which source wins when two observations of a patch on a machine have
# the same time (installation results first, Log Analytics Update last). arm_parent: the
# lower-case ARM id before a child segment such as '/patchassessmentresults' ('' when absent);
# string search, because a lazy regular expression costs seconds over a million ids.
# latest_capture: the rows of a table of dated captures (captured_at) that belong to its latest
# capture taken up to the end of the evaluation date, or its undated rows when no dated capture
# is that early (an export without a capture time).
SQL_MACROS = """
CREATE OR REPLACE TEMP MACRO source_rank(source) AS CASE source
    WHEN 'resource_graph_installation' THEN 1
    WHEN 'patch_operation_install' THEN 2
    WHEN 'resource_graph_assessment' THEN 3
    WHEN 'patch_operation_assess' THEN 4
    WHEN 'log_analytics_run' THEN 5
    WHEN 'log_analytics_update' THEN 6
END;
CREATE OR REPLACE TEMP MACRO arm_parent(id, segment) AS CASE
    WHEN id IS NULL THEN NULL
    WHEN strpos(lower(id), segment) > 0 THEN left(lower(id), strpos(lower(id), segment) - 1)
    ELSE ''
END;
-- The numbers of a Linux <package>_<version> key's version, in order, so that lists compare
-- versions number by number (1.9.9-1ubuntu2.11 after 1.9.9-1ubuntu2.9; an approximation of
-- dpkg's order that ignores '~' and letters).
CREATE OR REPLACE TEMP MACRO package_version_numbers(patch_key) AS
    [CAST(x AS BIGINT) FOR x IN regexp_extract_all(substr(patch_key, strpos(patch_key, '_') + 1), '\\d+')];
CREATE OR REPLACE TEMP MACRO latest_capture(tbl, as_of) AS TABLE
SELECT * FROM query_table(tbl)
WHERE captured_at IS NOT DISTINCT FROM (
    SELECT max(captured_at) FROM query_table(tbl)
    WHERE captured_at < timezone('UTC', (CAST(as_of AS DATE) + 1)::TIMESTAMP)
)
"""


# SQL_MACROS one statement per macro (its comment lines with it): name -> CREATE statement.
_MACROS = {re.match(r"\s*(\w+)", chunk).group(1): "CREATE OR REPLACE TEMP MACRO " + chunk
           for chunk in SQL_MACROS.split("CREATE OR REPLACE TEMP MACRO ")[1:]}


def create_macros(conn: duckdb.DuckDBPyConnection, query: str | None = None) -> None:
    """The shared macros on this connection: all of them, or only those `query` calls."""
    if query is None:
        conn.execute(SQL_MACROS)
        return
    used = [statement for name, statement in _MACROS.items() if re.search(rf"\b{name}\s*\(", query)]
    if used:
        conn.execute("\n".join(used))


@cache
def read_sql(name: str) -> str:
    path = SQL_DIR / f"{name}.sql"
    return path.read_text(encoding="utf-8")


@dataclass(frozen=True)
class UniqueKey:
    """`-- @unique <column>[, <column>...] [as <check name>][: <description>]`"""

    columns: tuple[str, ...]
    check_name: str
    description: str


@dataclass(frozen=True)
class SqlHeader:
    """What a SQL file's header declares (docs/architecture.md, "Extension points")."""

    description: str  # @table: the table's COMMENT
    columns: dict[str, str]  # @column name: text, the column COMMENTs
    summary: str  # @summary: the asset's description in Dagster (else @table)
    group: str  # @group: the Dagster asset group
    depends: tuple[str, ...]  # @depends schema.table, ...: upstream tables
    unique: tuple[UniqueKey, ...]  # @unique: blocking uniqueness checks


_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")


@cache
def sql_header(name: str) -> SqlHeader:
    """The `-- @...` declarations of `sql/<name>.sql`."""
    return parse_sql_header(read_sql(name), f"sql/{name}.sql")


def parse_sql_header(text: str, where_file: str) -> SqlHeader:
    """The `-- @...` lines of a SQL text; a malformed one is an error naming file, line and tag."""
    texts: dict[str, list[str]] = {"table": [], "summary": [], "group": []}
    columns: dict[str, str] = {}
    depends: list[str] = []
    unique: list[UniqueKey] = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped.startswith("-- @"):
            continue
        tag, _, rest = stripped.removeprefix("-- @").partition(" ")
        rest = rest.strip()
        where = f"{where_file} line {number} (@{tag})"
        if tag in texts:
            texts[tag].append(rest)
        elif tag == "column":
            column, _, text = rest.partition(":")
            columns[column.strip()] = text.strip()
        elif tag == "depends":
            for table in filter(None, (t.strip() for t in rest.split(","))):
                if not _TABLE_NAME.match(table):
                    raise ValueError(f"{where}: not a schema-qualified table name: {table!r}")
                depends.append(table)
        elif tag == "unique":
            spec, _, description = rest.partition(":")
            names, _, check_name = spec.partition(" as ")
            key = tuple(c.strip() for c in names.split(","))
            check_name = check_name.strip() or f"{'_'.join(key)}_unique"
            for identifier in (*key, check_name):
                if not _IDENTIFIER.match(identifier):
                    raise ValueError(f"{where}: not an identifier: {identifier!r}")
            unique.append(UniqueKey(key, check_name, description.strip()))
        # other tags (e.g. @partition) are read by the modules that use them
    return SqlHeader(
        description=" ".join(texts["table"]),
        columns=columns,
        summary="\n".join(texts["summary"]),
        group=" ".join(texts["group"]),
        depends=tuple(depends),
        unique=tuple(unique),
    )


def sql_docs(name: str) -> tuple[str, dict[str, str]]:
    """The table description and column descriptions from a SQL file's header."""
    header = sql_header(name)
    return header.description, header.columns


@contextmanager
def transaction(conn: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """All or nothing: on any error the warehouse keeps its previous state."""
    conn.execute("BEGIN TRANSACTION")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def build_table(
    conn: duckdb.DuckDBPyConnection,
    table: str,
    sql_name: str | None = None,
    params: Mapping[str, Any] | None = None,
) -> int:
    """(Re)build `table` from `sql/<sql_name>.sql` with bound parameters; returns its row count."""
    sql_name = sql_name or table.split(".", 1)[1]
    query = read_sql(sql_name)
    used = _parameters_in(query)
    bound = {k: v for k, v in (params or {}).items() if k in used}
    missing = used - bound.keys()
    if missing:
        raise ValueError(f"sql/{sql_name}.sql needs parameters {sorted(missing)}")
    create_macros(conn, query)
    started = time.perf_counter()
    conn.execute(f"CREATE OR REPLACE TABLE {_checked(table)} AS {query}", bound or None)
    if sql_timing_recorder is not None:
        sql_timing_recorder(table, sql_name, bound, time.perf_counter() - started)
    comment_table(conn, table, sql_name)
    return row_count(conn, table)


def sql_parameters(name: str) -> set[str]:
    """The `$name` parameters `sql/<name>.sql` takes."""
    return _parameters_in(read_sql(name))


def _parameters_in(query: str) -> set[str]:
    without_comments = re.sub(r"--[^\n]*", "", query)
    without_strings = re.sub(r"'(?:[^']|'')*'", "''", without_comments)
    return set(re.findall(r"\$([a-z_][a-z0-9_]*)", without_strings))


def comment_table(conn: duckdb.DuckDBPyConnection, table: str, sql_name: str, kind: str = "TABLE") -> None:
    """The SQL file's header as the COMMENTs of the table (or, in lake mode, the VIEW)."""
    description, columns = sql_docs(sql_name)
    statements = [f"COMMENT ON {kind} {_checked(table)} IS {sql_literal(description)}"] if description else []
    existing = {r[0] for r in conn.execute(f"SELECT * FROM {table} LIMIT 0").description}
    statements += [f'COMMENT ON COLUMN {table}."{column}" IS {sql_literal(text)}'
                   for column, text in columns.items() if column in existing]
    if statements:  # one round trip
        conn.execute(";\n".join(statements))


def sql_literal(text: str) -> str:
    """A SQL string literal (COMMENT ON takes no bound parameters)."""
    return "'" + text.replace("'", "''") + "'"


def replace_table(conn: duckdb.DuckDBPyConnection, table: str, data: Any) -> int:
    """Replace `table` with a pandas DataFrame or Arrow table in one bulk statement."""
    conn.register("_incoming", data)
    try:
        conn.execute(f"CREATE OR REPLACE TABLE {_checked(table)} AS SELECT * FROM _incoming")
    finally:
        conn.unregister("_incoming")
    return row_count(conn, table)


def row_count(conn: duckdb.DuckDBPyConnection, table: str) -> int:
    return conn.execute(f"SELECT count(*) FROM {_checked(table)}").fetchall()[0][0]


def table_exists(conn: duckdb.DuckDBPyConnection, table: str) -> bool:
    schema, name = _checked(table).split(".")
    return bool(
        conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
            [schema, name],
        ).fetchall()[0][0]
    )


def table_metadata(
    conn: duckdb.DuckDBPyConnection, table: str, preview_rows: int = 5, order_by: str = ""
) -> dict[str, Any]:
    """Dagster metadata for a table: row count, column schema with comments, a small preview.
    A raw table gets its column comments here first (pipelines.raw_comments)."""
    schema, name = _checked(table).split(".")
    if schema == "raw":
        from pipelines.raw_comments import comment_raw_columns

        comment_raw_columns(conn, table)
    columns = conn.execute(
        "SELECT column_name, data_type, comment FROM duckdb_columns() "
        "WHERE schema_name = ? AND table_name = ? ORDER BY column_index",
        [schema, name],
    ).fetchall()
    # The first rows as stored (a table keeps the order its SQL gives): sorting a whole table
    # for five rows cost up to a second a step on large tables.
    order = f" ORDER BY {order_by}" if order_by else ""
    preview = markdown_rows(conn, f"SELECT * FROM {table}{order} LIMIT {int(preview_rows)}") if preview_rows else None
    return {
        "dagster/table_name": dg.MetadataValue.text(f"warehouse.{table}"),
        "dagster/row_count": dg.MetadataValue.int(row_count(conn, table)),
        "dagster/column_schema": dg.TableSchema(
            columns=[
                dg.TableColumn(name=c, type=t, description=d or None) for c, t, d in columns
            ]
        ),
        **({"preview": dg.MetadataValue.md(preview)} if preview is not None else {}),
    }


def markdown_rows(conn: duckdb.DuckDBPyConnection, query: str) -> str:
    """A query's rows as a Markdown table, values as DuckDB returns them (no DataFrame: a pandas
    preview cost more than the rest of a small step, and showed integers with a NULL beside them
    as floats, booleans as 0/1 and lists as arrays); NULL is an empty cell."""
    from tabulate import tabulate

    cursor = conn.execute(query)
    rows = cursor.fetchall()
    if not rows:
        return "_empty_"
    # Numbers right-aligned; text as stored (not read as a number: '10.0' stays '10.0').
    text = [i for i in range(len(cursor.description)) if any(isinstance(row[i], str) for row in rows)]
    return tabulate(rows, headers=[d[0] for d in cursor.description], tablefmt="pipe", disable_numparse=text)


def resolve_as_of(conn: duckdb.DuckDBPyConnection, configured: date | None) -> date:
    """The evaluation date: as configured, else the day of the newest observation.

    Deriving it from the data (not the clock) keeps reruns on the same inputs byte-identical.
    """
    if configured is not None:
        return configured
    if table_exists(conn, "staging.patch_observations"):
        newest = conn.execute(
            "SELECT max(observed_at)::DATE FROM staging.patch_observations"
        ).fetchall()[0][0]
        if newest is not None:
            return newest
    return datetime.now(UTC).date()
