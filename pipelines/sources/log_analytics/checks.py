"""The row checks of a Log Analytics export: each text cell against its documented type, the
required values and the vocabularies; bad cells go to raw.quarantine when they are few enough
(pipelines/ingest/quarantine.py), else the file fails naming file, row and field."""

from __future__ import annotations

import csv
import io
import re

import duckdb

from pipelines.ingest.bulk import execute
from pipelines.ingest.errors import SourceFileError
from pipelines.ingest.quarantine import QUARANTINE_MAX_SHARE, QUARANTINE_VALUE_CHARS

from . import MAX_LINE_SIZE, PORTAL_DATETIME_FORMATS, REQUIRED_VALUES


def quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def typed_sql(column: str, la_type: str) -> str:
    """SQL turning the text column into its documented type (NULL when it does not parse)."""
    v = f"nullif(trim({quote(column)}), '')"
    if la_type == "datetime":
        return (
            f"coalesce(try_cast({v} AS TIMESTAMPTZ), "
            f"timezone('UTC', try_strptime({v}, $datetime_formats)))"
        )
    if la_type == "bool":
        return f"CASE lower({v}) WHEN 'true' THEN true WHEN '1' THEN true WHEN 'false' THEN false WHEN '0' THEN false END"
    if la_type == "int":
        return f"try_cast(try_cast({v} AS DOUBLE) AS BIGINT)"
    if la_type == "real":
        return f"try_cast({v} AS DOUBLE)"
    # The portal writes nulls as empty cells; JSON forms as "": both become NULL.
    return f"nullif({quote(column)}, '')"


def problem_conditions(
    columns: dict[str, str], present: list[str], vocabularies: dict[str, tuple[str, ...]],
    typed: dict[str, str] | None = None,
) -> list[tuple[str, str, str]]:
    """(field, SQL condition true for a bad cell, reason SQL literal) for every check; `typed`:
    SQL of each column's value already converted (default: typed_sql, converting again)."""
    checks = []
    for column in present:
        la_type = columns[column]
        q = quote(column)
        if la_type != "string":
            value = (typed or {}).get(column) or typed_sql(column, la_type)
            checks.append((column, f"nullif(trim({q}), '') IS NOT NULL AND {value} IS NULL",
                           f"'is not a valid {la_type}'"))
        if column in REQUIRED_VALUES:
            checks.append((column, f"nullif(trim({q}), '') IS NULL", "'a value is required'"))
        if column in vocabularies:
            allowed = ", ".join(f"'{_word(v)}'" for v in vocabularies[column])
            checks.append((
                column,
                f"nullif(trim({q}), '') IS NOT NULL "
                f"AND regexp_replace(lower({q}), '[^a-z]', '', 'g') NOT IN ({allowed})",
                f"'must be one of {'/'.join(vocabularies[column])}'",
            ))
    return checks


def _problems_sql(
    columns: dict[str, str], present: list[str], vocabularies: dict[str, tuple[str, ...]]
) -> str:
    """One SELECT of (_row, field, raw_value, reason) for every bad cell of _la_text."""
    parts = [
        f"SELECT _row, '{column}' AS field, {quote(column)} AS raw_value, {reason} AS reason "
        f"FROM _la_text WHERE {condition}"
        for column, condition, reason in problem_conditions(columns, present, vocabularies)
    ]
    return " UNION ALL ".join(parts) or (
        "SELECT NULL::BIGINT AS _row, '' AS field, '' AS raw_value, '' AS reason WHERE false"
    )


def check_csv_shape(data: bytes, name: str) -> None:
    """Every record has the header's number of fields (DuckDB's sniffer would otherwise misread
    a ragged file's header and report the wrong problem)."""
    previous_limit = csv.field_size_limit(MAX_LINE_SIZE)
    try:
        reader = csv.reader(io.StringIO(data.decode("utf-8-sig"), newline=""))
        width = None
        for number, record in enumerate(reader):
            if not record:
                continue
            if width is None:
                width = len(record)
            elif len(record) != width:
                raise SourceFileError(
                    f"{name}: row {number}: has {len(record)} fields, the header has {width}"
                )
    except csv.Error as exc:
        raise SourceFileError(f"{name}: not valid CSV: {exc}") from exc
    finally:
        csv.field_size_limit(previous_limit)


def _word(value: str) -> str:
    return re.sub(r"[^a-z]", "", value.lower())


def problems_into_quarantine(
    conn: duckdb.DuckDBPyConnection,
    name: str,
    columns: dict[str, str],
    present: list[str],
    table: str,
    ingest_run: str,
    vocabularies: dict[str, tuple[str, ...]],
    rows: int,
) -> int:
    """_la_problems from _la_text; fail above QUARANTINE_MAX_SHARE, else quarantine the bad cells.
    Returns the number of bad rows."""
    execute(
        conn,
        "CREATE OR REPLACE TEMP TABLE _la_problems AS " + _problems_sql(columns, present, vocabularies),
        {"datetime_formats": PORTAL_DATETIME_FORMATS},
    )
    bad_rows = conn.execute("SELECT count(DISTINCT _row) FROM _la_problems").fetchall()[0][0]
    if bad_rows and bad_rows > QUARANTINE_MAX_SHARE * rows:
        row, column, value, reason = conn.execute(
            "SELECT _row, field, raw_value, reason FROM _la_problems ORDER BY _row, field LIMIT 1"
        ).fetchall()[0]
        raise SourceFileError(
            f"{name}: row {row}, field {column}: {_shown(value)} {reason} "
            f"({bad_rows} of {rows} rows bad: more than {QUARANTINE_MAX_SHARE:.0%}, "
            "so the file is not loaded)"
        )
    if bad_rows:
        conn.execute(
            "INSERT INTO raw.quarantine SELECT ?, ?, _row, field, reason, "
            f"left(raw_value, {QUARANTINE_VALUE_CHARS}), ? FROM _la_problems ORDER BY _row, field",
            [table, name, ingest_run],
        )
    return bad_rows


def _shown(value: str | None) -> str:
    if value is None:
        return "(empty)"
    return repr(value if len(value) <= 200 else value[:200] + "…")
