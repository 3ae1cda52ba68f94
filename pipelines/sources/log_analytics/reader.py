"""Offline loader for the Log Analytics tables Update, UpdateSummary and UpdateRunProgress.

Three export forms are accepted (data-sources.md section 4.0), told apart by the file:
- portal CSV (`*.csv`): headers may carry a " [UTC]" suffix, datetimes in the portal's US
  12-hour display form (`5/25/2023, 4:32:49.469 AM`), optional UTF-8 BOM;
- `az monitor log-analytics query -o json` (`*.json`, a JSON array of objects, values strings);
- the query API body (`*.json`, `{"tables": [{"columns": [...], "rows": [[...]]}]}`).

Every form is first read by DuckDB as text columns named as in Log Analytics, then cast to the
documented type in SQL. Columns outside the documented list are not kept.

Bad input (tests/test_bad_inputs.py). A file that cannot be read as a whole (not UTF-8: the
byte offset is named; empty; broken JSON or CSV; a required column missing) fails the load with
a SourceFileError naming the file, and the caller's transaction keeps the last good state.
Row-level problems (a value that does not parse as its documented type, an empty TimeGenerated
or Computer, an UpdateState / InstallationStatus outside the documented vocabulary) are named by
file, row (1 = first data row) and field. Exports hold thousands of rows and one garbled row
should not block the evidence run, so when at most QUARANTINE_MAX_SHARE (1 %) of a file's rows
are bad, those rows go to `raw.quarantine` (pipelines/ingest/quarantine.py) and every other row
loads. Above that share the load fails on the first problem. Legal oddities load as received: duplicate rows (the same record in two
exports; staging keeps one), mixed time-zone offsets (stored as the UTC instant), any text
(HTML, formulas, a 5 MB title) verbatim.

Incremental and bulk (pipelines/ingest/): unchanged files and copies are skipped, a changed file
replaces its own rows (and quarantine rows). Portal CSVs with the same header are read by ONE
strict DuckDB statement (explicit columns, no sniffing: a ragged row or a bad byte fails it),
typed into a temporary table with a per-row `_bad` flag; only files with bad rows, or a failed
read, are examined file by file with the detailed checks (file, row, field).
"""

from __future__ import annotations

import csv
import io
import logging
import re
from pathlib import Path

import duckdb

from pipelines.ingest.bulk import diagnose, execute
from pipelines.ingest.errors import SourceFileError
from pipelines.ingest.files import (
    IngestStats,
    SourceFile,
    check_not_empty,
    check_text_file,
    json_top_level,
    max_object_size,
    plan_ingest,
    relative_name,
)
from pipelines.ingest.quarantine import QUARANTINE_DDL

from . import (
    DUCKDB_TYPES,
    FOLDER,
    MAX_LINE_SIZE,
    PORTAL_DATETIME_FORMATS,
    TABLES,
    UTC_SUFFIX,
    VOCABULARIES,
)
from .checks import check_csv_shape, problem_conditions, problems_into_quarantine, quote, typed_sql


def la_files(estate_dir: Path, la_table: str) -> list[Path]:
    """Files of one table: the name starts with the table name and the next character is not a
    letter, so `Update*` does not pick up `UpdateSummary*`."""
    pattern = re.compile(rf"^{la_table}(?![A-Za-z]).*\.(csv|json)$", re.IGNORECASE)
    folder = estate_dir.joinpath(*FOLDER)
    return sorted(p for p in folder.glob("*") if p.is_file() and pattern.match(p.name))


def _text_source(conn: duckdb.DuckDBPyConnection, path: Path, columns: dict[str, str]) -> tuple[str, list[str]]:
    """A SELECT giving the file's rows as text columns named as in Log Analytics (parameter
    $path), and the names of the documented columns the file has."""
    if path.suffix.lower() == ".csv":
        reader = (
            "read_csv($path, header = true, all_varchar = true, delim = ',', quote = '\"', "
            f"escape = '\"', strict_mode = true, max_line_size = {MAX_LINE_SIZE})"
        )
        described = conn.execute(f"SELECT * FROM {reader} LIMIT 0", {"path": str(path)})
        header_names = [d[0] for d in described.description]
        present = {}
        for header in header_names:
            name = UTC_SUFFIX.sub("", header)
            if name in columns and name not in present:
                present[name] = header
        select = ", ".join(f"{quote(h)} AS {quote(n)}" for n, h in present.items())
        return f"SELECT {select or 'NULL AS _none'} FROM {reader}", list(present)
    if json_top_level(path) == "[":
        literal = "{" + ", ".join(f"'{n}': 'VARCHAR'" for n in columns) + "}"
        reader = f"read_json($path, format = 'array', columns = {literal})"
        # Only keys that occur in the file count as present (az prints every projected column).
        keys = conn.execute(
            "SELECT DISTINCT unnest(json_keys(json)) FROM read_json_objects($path, "
            f"format = 'array', maximum_object_size = {max_object_size(path)})",
            {"path": str(path)},
        ).fetchall()
        present = [n for n in columns if n in {k[0] for k in keys}]
        select = ", ".join(quote(n) for n in present)
        return f"SELECT {select or 'NULL AS _none'} FROM {reader}", present
    # The body is parsed once (one JSON document: the column names and the rows come from it).
    conn.execute(
        "CREATE OR REPLACE TEMP TABLE _la_body AS SELECT tables FROM read_json($path, columns = {'tables': "
        "'STRUCT(name VARCHAR, columns STRUCT(name VARCHAR, type VARCHAR)[], rows JSON[][])[]'}, "
        f"maximum_object_size = {max_object_size(path)})",
        {"path": str(path)},
    )
    body = "_la_body"
    fetched = conn.execute(
        f"SELECT list_transform(tables, lambda t: list_transform(t.columns, lambda c: c.name)) FROM {body}"
    ).fetchall()
    tables = fetched[0] if fetched else None
    if not tables or not tables[0]:
        raise SourceFileError(f"{path.name}: no 'tables' in the query API body")
    # The query API returns one PrimaryResult table; several are unioned by column name.
    parts = []
    present_all: list[str] = []
    for index, names in enumerate(tables[0], start=1):
        positions = {n: i for i, n in enumerate(names or [], start=1) if n in columns}
        present_all += [n for n in positions if n not in present_all]
        parts.append((index, positions))
    selects = []
    for index, positions in parts:
        cols = ", ".join(
            f"json_extract_string(r[{positions[n]}], '$') AS {quote(n)}"
            if n in positions
            else f"NULL::VARCHAR AS {quote(n)}"
            for n in present_all
        )
        selects.append(
            f"SELECT {cols or 'NULL AS _none'} FROM (SELECT unnest(tables[{index}].rows) AS r FROM {body})"
        )
    return " UNION ALL BY NAME ".join(selects), present_all


def load_log_analytics(
    conn: duckdb.DuckDBPyConnection,
    estate_dir: Path,
    la_table: str,
    table: str,
    ingest_run: str,
    log: logging.Logger | None = None,
    full_reload: bool = False,
) -> IngestStats:
    """Add the rows of every new or changed export of `la_table` in `log_analytics/` to `table`."""
    columns, required = TABLES[la_table]
    conn.execute(QUARANTINE_DDL)
    files = la_files(estate_dir, la_table)
    typed = {n: DUCKDB_TYPES[t] for n, t in columns.items()}
    todo, stats = plan_ingest(
        conn, table, typed, files, estate_dir, full_reload,
        extra_delete="DELETE FROM raw.quarantine WHERE source = $table AND source_file IN (SELECT unnest($names))",
    )
    if stats.full_reload:
        conn.execute("DELETE FROM raw.quarantine WHERE source = ?", [table])
    if not files:
        if log is not None:
            log.warning(f"Log Analytics {la_table}: no export under log_analytics/; the table is empty")
        return stats
    vocabularies = VOCABULARIES.get(la_table, {})
    total = 0
    csv_groups: dict[tuple[str, ...], list[SourceFile]] = {}
    headers: dict[str, list[str] | None] = {}
    for f in todo:
        check_not_empty(f.path, f.name)
        header = headers[f.name] = _csv_header(f.path) if f.path.suffix.lower() == ".csv" else None
        if header is not None:
            csv_groups.setdefault(tuple(header), []).append(f)
    for header, group in csv_groups.items():
        total += _load_csv_group(conn, list(header), group, columns, required, table, ingest_run, vocabularies)
    for f in todo:
        if headers[f.name] is None:
            total += _load_file(
                conn, f.path, estate_dir, columns, required, table, ingest_run, vocabularies, f.sha256
            )
    stats.rows = total
    return stats


def _csv_header(path: Path) -> list[str] | None:
    """The header record of a CSV (BOM removed), read from the file's start; None when it cannot
    be parsed from there (the file then takes the per-file path)."""
    with path.open("rb") as handle:
        head = handle.read(1 << 20)
    try:
        text = head.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        text = head[: exc.start].decode("utf-8-sig", errors="ignore")
    if "\n" not in text:
        return None
    try:
        record = next(csv.reader(io.StringIO(text, newline="")), None)
    except csv.Error:
        return None
    return record or None


def _load_csv_group(
    conn: duckdb.DuckDBPyConnection,
    header: list[str],
    files: list[SourceFile],
    columns: dict[str, str],
    required: tuple[str, ...],
    table: str,
    ingest_run: str,
    vocabularies: dict[str, tuple[str, ...]],
) -> int:
    """Portal CSVs sharing one header, read in one strict statement."""
    present: dict[str, str] = {}
    for index, raw_name in enumerate(header):
        name = UTC_SUFFIX.sub("", raw_name)
        if name in columns and name not in present:
            present[name] = f"c{index}"
    spec = "{" + ", ".join(f"'c{i}': 'VARCHAR'" for i in range(len(header))) + "}"
    reader = (
        f"read_csv(@SRC@, header = true, auto_detect = false, columns = {spec}, delim = ',', "
        f"quote = '\"', escape = '\"', strict_mode = true, null_padding = false, "
        f"max_line_size = {MAX_LINE_SIZE}@OPTS@)"
    )
    renamed = ", ".join(f"{c} AS {quote(n)}" for n, c in present.items()) or "NULL AS _none"
    many = f"SELECT {renamed}, filename FROM {reader.replace('@SRC@', '$paths').replace('@OPTS@', ', filename = true')}"
    one = f"SELECT {renamed} FROM {reader.replace('@SRC@', '$path').replace('@OPTS@', '')}"
    missing = [c for c in required if c not in present]
    if missing:
        raise SourceFileError(f"{files[0].name}: missing column(s) {', '.join(missing)}")
    # Each cell is converted once ("_typed_<column>"); the checks test the converted value.
    converted = {c: quote(f"_typed_{c}") for c in present}
    conditions = [c for _, c, _ in problem_conditions(columns, list(present), vocabularies, converted)]
    bad = " OR ".join(f"({c})" for c in conditions) or "false"
    conversions = ", ".join(f"{typed_sql(c, columns[c])}::{DUCKDB_TYPES[columns[c]]} AS {converted[c]}" for c in present)
    typed = ", ".join(
        f"{converted[c]} AS {quote(c)}" if c in present else f"NULL::{DUCKDB_TYPES[t]} AS {quote(c)}"
        for c, t in columns.items()
    )
    params = {"datetime_formats": PORTAL_DATETIME_FORMATS, "paths": [str(f.path) for f in files]}
    try:
        execute(
            conn,
            f"CREATE OR REPLACE TEMP TABLE _la_typed AS SELECT {typed}, _bad, filename AS _path FROM ("
            f"SELECT *, coalesce({bad}, false) AS _bad FROM (SELECT *{', ' + conversions if conversions else ''} "
            f"FROM ({many})))",
            params,
        )
    except duckdb.Error as exc:
        raise diagnose(conn, files, one, exc, extra_check=check_csv_shape) from exc
    try:
        counts = {
            path: (rows, bad_rows)
            for path, rows, bad_rows in conn.execute(
                "SELECT _path, count(*), count(*) FILTER (WHERE _bad) FROM _la_typed GROUP BY _path"
            ).fetchall()
        }
        for f in files:
            rows, bad_rows = counts.get(str(f.path), (0, 0))
            if bad_rows:
                _quarantine_file(conn, f, columns, present, table, ingest_run, vocabularies, rows)
        execute(
            conn,
            f"INSERT INTO {table} SELECT * EXCLUDE (_bad, _path), "
            "$names[list_position($paths, _path)], $shas[list_position($paths, _path)], $run "
            "FROM _la_typed WHERE NOT _bad",
            {**params, "names": [f.name for f in files], "shas": [f.sha256 for f in files], "run": ingest_run},
        )
        return sum(rows - bad_rows for rows, bad_rows in counts.values())
    finally:
        conn.execute("DROP TABLE IF EXISTS _la_typed")


def _quarantine_file(
    conn: duckdb.DuckDBPyConnection,
    f: SourceFile,
    columns: dict[str, str],
    present: dict[str, str],
    table: str,
    ingest_run: str,
    vocabularies: dict[str, tuple[str, ...]],
    rows: int,
) -> None:
    """The detailed problems of one file with bad rows: fail above the share, else quarantine."""
    try:
        source, _ = _text_source(conn, f.path, columns)
        execute(conn, f"CREATE OR REPLACE TEMP TABLE _la_text AS SELECT row_number() OVER () AS _row, * FROM ({source})",
                {"path": str(f.path)})
        conn.execute("DROP TABLE IF EXISTS _la_body")  # a query API body, parsed once
    except duckdb.Error as exc:
        raise SourceFileError(f"{f.name}: cannot be read: {exc}") from exc
    try:
        problems_into_quarantine(conn, f.name, columns, list(present), table, ingest_run, vocabularies, rows)
    finally:
        conn.execute("DROP TABLE IF EXISTS _la_text")
        conn.execute("DROP TABLE IF EXISTS _la_problems")


def _load_file(
    conn: duckdb.DuckDBPyConnection,
    path: Path,
    base: Path,
    columns: dict[str, str],
    required: tuple[str, ...],
    table: str,
    ingest_run: str,
    vocabularies: dict[str, tuple[str, ...]],
    sha: str,
) -> int:
    """One export on its own (JSON forms, odd CSVs): DuckDB validates UTF-8 while reading; the
    Python scan runs only to explain a failed read."""
    name = relative_name(path, base)
    is_csv = path.suffix.lower() == ".csv"
    try:
        source, present = _text_source(conn, path, columns)
        missing = [c for c in required if c not in present]
        if missing:
            raise SourceFileError(f"{name}: missing column(s) {', '.join(missing)}")
        # Row numbers in file order (1 = first data row) for error messages.
        execute(conn, f"CREATE OR REPLACE TEMP TABLE _la_text AS SELECT row_number() OVER () AS _row, * FROM ({source})",
                {"path": str(path)})
        conn.execute("DROP TABLE IF EXISTS _la_body")  # a query API body, parsed once
    except (duckdb.Error, SourceFileError) as exc:
        data = check_text_file(path, name)
        if is_csv:
            check_csv_shape(data, name)
        if isinstance(exc, SourceFileError):
            raise
        raise SourceFileError(f"{name}: cannot be read: {exc}") from exc
    try:
        rows = conn.execute("SELECT count(*) FROM _la_text").fetchall()[0][0]
        bad_rows = problems_into_quarantine(conn, name, columns, present, table, ingest_run, vocabularies, rows)
        params = {"datetime_formats": PORTAL_DATETIME_FORMATS}
        select = ", ".join(
            f"{typed_sql(c, t)}::{DUCKDB_TYPES[t]}" if c in present else f"NULL::{DUCKDB_TYPES[t]}"
            for c, t in columns.items()
        )
        execute(
            conn,
            f"INSERT INTO {table} SELECT {select}, $source_file, $sha, $run FROM _la_text "
            "WHERE _row NOT IN (SELECT _row FROM _la_problems) ORDER BY _row",
            {**params, "source_file": name, "sha": sha, "run": ingest_run},
        )
        return rows - bad_rows
    finally:
        conn.execute("DROP TABLE IF EXISTS _la_text")
        conn.execute("DROP TABLE IF EXISTS _la_problems")
