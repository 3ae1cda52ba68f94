"""Reading files into a raw table with DuckDB, and the checks that name file, row and field.

Files of one kind are read by ONE DuckDB statement (a list of paths, `filename=true`); only when
it fails is each file checked on its own (UTF-8, then a per-file read) so that the error still
names the file. Row-level checks run once over the new rows and locate the first offending
file / row / field only on failure.

A check is (field, SQL condition true for a bad row, SQL giving the offending value, reason);
row 1 is the first element of the file's array / `value` / `data` list.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import duckdb

from pipelines.ingest.errors import SourceFileError
from pipelines.ingest.files import (
    SourceFile,
    check_not_empty,
    check_text_file,
    json_top_level,
    max_object_size,
    relative_name,
)

Check = tuple[str, str, str, str]


def execute(
    conn: duckdb.DuckDBPyConnection, sql: str, params: dict[str, Any]
) -> duckdb.DuckDBPyConnection:
    """Run `sql` binding only the named parameters it uses (DuckDB rejects unused ones)."""
    return conn.execute(sql, {k: v for k, v in params.items() if f"${k}" in sql} or None)


def count_rows(conn: duckdb.DuckDBPyConnection, table: str) -> int:
    return conn.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]


def sql_in(values: tuple[str, ...]) -> str:
    """A lower-case SQL list of constant vocabulary words, for `lower(x) IN (...)`."""
    return "(" + ", ".join(f"'{v.lower()}'" for v in values) + ")"


def bad_timestamp(json_path: str) -> str:
    return f"({json_path} IS NOT NULL AND try_cast({json_path} AS TIMESTAMPTZ) IS NULL)"


def struct_type(columns: dict[str, str]) -> str:
    return "STRUCT(" + ", ".join(f'"{n}" {t}' for n, t in columns.items()) + ")"


def columns_literal(columns: dict[str, str]) -> str:
    return "{" + ", ".join(f"'{n}': '{t}'" for n, t in columns.items()) + "}"


def many_and_one(select: str) -> tuple[str, str]:
    """The SELECT over the list $paths (with a filename column) and over one file $path, from a
    template with @SRC@ (the path or paths), @OPTS@ (reader options) and @FN@ (the filename)."""
    many = select.replace("@SRC@", "$paths").replace("@OPTS@", ", filename=true").replace("@FN@", ", filename")
    one = select.replace("@SRC@", "$path").replace("@OPTS@", "").replace("@FN@", "")
    return many, one


def by_shape(files: list[SourceFile]) -> dict[str, list[SourceFile]]:
    """The files grouped by their JSON top level ('[' or '{'), after the cheap checks."""
    groups: dict[str, list[SourceFile]] = {}
    for f in files:
        check_not_empty(f.path, f.name)
        groups.setdefault(json_top_level(f.path), []).append(f)
    return groups


def max_size(files: list[SourceFile]) -> int:
    return max(max_object_size(f.path) for f in files)


# Source bytes parsed into memory at once when files are read into a temporary table first
# (bulk_insert's `documents`): a full load of 90 days of Resource Graph files at 10,000 VMs in one
# statement held about 2 GB.
DOCUMENT_BATCH_BYTES = 256 * 2**20


def batches(files: list[SourceFile], max_bytes: int) -> list[list[SourceFile]]:
    """The files in name order, cut into consecutive batches of at most `max_bytes` of source
    (a larger file is a batch of its own): what one statement parses into memory."""
    out: list[list[SourceFile]] = []
    size = 0
    for f in files:
        length = f.size if f.size is not None else f.path.stat().st_size
        if not out or size + length > max_bytes:
            out.append([])
            size = 0
        out[-1].append(f)
        size += length
    return out


def warn_missing(log: logging.Logger | None, what: str, where: Path) -> None:
    if log is not None:
        log.warning(f"{what}: no file under {where.name}/; the table is empty")


def diagnose(
    conn: duckdb.DuckDBPyConnection,
    files: list[SourceFile],
    select_one: str,
    exc: duckdb.Error,
    extra_check=None,
) -> SourceFileError:
    """After a bulk read failed: the first file that fails on its own (UTF-8, `extra_check`,
    then DuckDB reading only that file with `select_one`, parameter $path), as the error."""
    cursor = conn.cursor()  # the caller's transaction is aborted; read on a fresh connection
    try:
        cursor.execute("SET TimeZone = 'UTC'")
        for f in files:
            data = check_text_file(f.path, f.name)
            if extra_check is not None:
                extra_check(data, f.name)
            del data
            try:
                cursor.execute(f"SELECT count(*) FROM ({select_one})", {"path": str(f.path)}).fetchall()
            except duckdb.Error as single:
                return SourceFileError(f"{f.name}: cannot be read: {single}")
    finally:
        cursor.close()
    return SourceFileError(f"cannot be read: {exc}")


def bulk_insert(
    conn: duckdb.DuckDBPyConnection,
    table: str,
    select_many: str,
    select_one: str,
    files: list[SourceFile],
    ingest_run: str,
    documents: str | None = None,
) -> None:
    """INSERT the rows of every file in one statement: `select_many` reads the list $paths with
    a `filename` column last; provenance comes from the file lists. With `documents` (a SELECT
    over $paths with `filename`) the files are first parsed into the temporary table `documents`,
    which `select_many` then unnests and the caller may read again."""
    params = {
        "paths": [str(f.path) for f in files],
        "names": [f.name for f in files],
        "shas": [f.sha256 for f in files],
        "run": ingest_run,
    }
    try:
        if documents is not None:
            conn.execute(f"CREATE OR REPLACE TEMP TABLE documents AS {documents}", {"paths": params["paths"]})
        conn.execute(
            f"INSERT INTO {table} SELECT * EXCLUDE (filename), "
            "$names[list_position($paths, filename)], $shas[list_position($paths, filename)], $run "
            f"FROM ({select_many})",
            params,
        )
    except duckdb.Error as exc:
        raise diagnose(conn, files, select_one, exc) from exc


def require_bulk(
    conn: duckdb.DuckDBPyConnection,
    table: str,
    files: list[SourceFile],
    base: Path,
    checks: list[Check],
) -> None:
    """Row-local checks over the new rows in one scan; on failure the first offending file is
    examined by `require` (file, row, field)."""
    if not files:
        return
    condition = " OR ".join(f"({c})" for _, c, _, _ in checks)
    # A check over a window (partitioned by source_file, so it holds file by file) is a QUALIFY.
    where = (f"WHERE source_file IN (SELECT unnest($names)) QUALIFY ({condition})" if " OVER " in condition
             else f"WHERE source_file IN (SELECT unnest($names)) AND ({condition})")
    bad = {
        r[0]
        for r in conn.execute(
            f"SELECT DISTINCT source_file FROM (SELECT source_file FROM {table} {where})",
            {"names": [f.name for f in files]},
        ).fetchall()
    }
    for f in files:
        if f.name in bad:
            require(conn, table, f.path, base, checks)
    if bad:
        raise SourceFileError(f"{sorted(bad)[0]}: a row fails a check")


def require(
    conn: duckdb.DuckDBPyConnection,
    table: str,
    path: Path,
    base: Path,
    checks: list[Check],
) -> None:
    """Fail naming the file, the first offending row and the field."""
    name = relative_name(path, base)
    for field_name, condition, value_sql, reason in checks:
        bad = conn.execute(
            f"SELECT _n, _v, count(*) OVER () FROM (SELECT _n, ({value_sql})::VARCHAR AS _v "
            f"FROM (SELECT row_number() OVER () AS _n, * FROM {table} WHERE source_file = ?) "
            f"QUALIFY ({condition}) AND count(*) OVER () > 0) ORDER BY _n LIMIT 1",
            [name],
        ).fetchall()
        if bad:
            row, value, count = bad[0]
            shown = "missing" if value is None else repr(value[:200])
            raise SourceFileError(
                f"{name}: row {row}, field {field_name}: {shown}: {reason}"
                + (f" ({count} rows)" if count > 1 else "")
            )
