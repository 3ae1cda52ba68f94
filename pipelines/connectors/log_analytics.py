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
should not block the evidence run, so a mature loader quarantines them, as BigQuery's
max_bad_records or DuckDB's rejects table do: when at most QUARANTINE_MAX_SHARE (1 %) of a
file's rows are bad, those rows go to `raw.quarantine` (source, source_file, row, field, reason,
raw_value, ingest_run; one row per bad cell) and every other row loads. Above that share the
file is probably not the documented format at all and the load fails on the first problem.
`raw.quarantine` rows of a raw table are replaced with that table; the asset reports their count
as `quarantined_rows`. Legal oddities load as received: duplicate rows (the same record in two
exports; staging keeps one), mixed time-zone offsets (stored as the UTC instant), any text
(HTML, formulas, a 5 MB title) verbatim.

Incremental and bulk (see azure_files): unchanged files and copies are skipped, a changed file
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

from pipelines.connectors.azure_files import (
    LAST_INGEST,
    SourceFile,
    SourceFileError,
    check_not_empty,
    check_text_file,
    diagnose,
    execute,
    json_top_level,
    max_object_size,
    plan_ingest,
    relative_name,
)

_IDENTITY = {
    "Computer": "string",
    "ComputerEnvironment": "string",
    "SourceComputerId": "string",
    "VMUUID": "string",
    "ResourceId": "string",
    "_ResourceId": "string",
    "SubscriptionId": "string",
    "ResourceGroup": "string",
    "ResourceProvider": "string",
    "Resource": "string",
    "ResourceType": "string",
    "ManagementGroupName": "string",
}

# Column name -> Log Analytics type, per the table references (data-sources.md 4.1-4.3).
UPDATE_COLUMNS = {
    "TimeGenerated": "datetime",
    **_IDENTITY,
    "OSType": "string",
    "OSName": "string",
    "OSVersion": "string",
    "OSFullName": "string",
    "UpdateID": "string",
    "RevisionNumber": "string",
    "Title": "string",
    "KBID": "string",
    "Classification": "string",
    "MSRCSeverity": "string",
    "MSRCBulletinID": "string",
    "BulletinID": "string",
    "BulletinUrl": "string",
    "CVENumbers": "string",
    "PublishedDate": "datetime",
    "UpdateState": "string",
    "Approved": "bool",
    "ApprovalSource": "string",
    "Optional": "bool",
    "RebootBehavior": "string",
    "InstallTimeAvailable": "bool",
    "InstallTimePredictionSeconds": "real",
    "InstallTimeDeviationRangeSeconds": "real",
    "Product": "string",
    "ProductVersion": "string",
    "ProductArch": "string",
    "PackageRepository": "string",
    "PackageSeverity": "string",
    "SourceSystem": "string",
    "Type": "string",
}

UPDATE_SUMMARY_COLUMNS = {
    "TimeGenerated": "datetime",
    **_IDENTITY,
    "OsVersion": "string",
    "CriticalUpdatesMissing": "int",
    "SecurityUpdatesMissing": "int",
    "OtherUpdatesMissing": "int",
    "TotalUpdatesMissing": "int",
    "OldestMissingSecurityUpdateInDays": "int",
    "OldestMissingSecurityUpdateBucket": "string",
    "RestartPending": "bool",
    "WindowsUpdateSetting": "string",
    "WindowsUpdateAgentVersion": "string",
    "WSUSServer": "string",
    "NETRuntimeVersion": "string",
    "SourceSystem": "string",
    "Type": "string",
}

UPDATE_RUN_PROGRESS_COLUMNS = {
    "TimeGenerated": "datetime",
    "StartTime": "datetime",
    "EndTime": "datetime",
    "UpdateRunName": "string",
    "CorrelationId": "string",
    **_IDENTITY,
    "OSType": "string",
    "KBID": "string",
    "Title": "string",
    "Product": "string",
    "UpdateId": "string",
    "InstallationStatus": "string",
    "ErrorResult": "string",
    "SucceededOnRetry": "bool",
    "SourceSystem": "string",
    "Type": "string",
}

# Log Analytics table -> (columns, columns a file must have).
TABLES: dict[str, tuple[dict[str, str], tuple[str, ...]]] = {
    "Update": (UPDATE_COLUMNS, ("TimeGenerated", "Computer", "UpdateState")),
    "UpdateSummary": (UPDATE_SUMMARY_COLUMNS, ("TimeGenerated", "Computer")),
    "UpdateRunProgress": (
        UPDATE_RUN_PROGRESS_COLUMNS,
        ("TimeGenerated", "Computer", "InstallationStatus"),
    ),
}

_DUCKDB_TYPES = {
    "datetime": "TIMESTAMPTZ",
    "string": "VARCHAR",
    "bool": "BOOLEAN",
    "int": "BIGINT",
    "real": "DOUBLE",
}

# The portal's display format, with and without milliseconds.
PORTAL_DATETIME_FORMATS = ["%m/%d/%Y, %I:%M:%S.%g %p", "%m/%d/%Y, %I:%M:%S %p"]

# Share of a file's rows that may be quarantined instead of failing the file.
QUARANTINE_MAX_SHARE = 0.01
# Values in raw.quarantine are cut to this many characters.
QUARANTINE_VALUE_CHARS = 4096
# Longest CSV line read (a 5 MB title is legal).
MAX_LINE_SIZE = 64 * 2**20

QUARANTINE_DDL = """
CREATE TABLE IF NOT EXISTS raw.quarantine (
    source VARCHAR, source_file VARCHAR, "row" BIGINT, field VARCHAR, reason VARCHAR,
    raw_value VARCHAR, ingest_run VARCHAR
)
"""

# Columns that must hold a value, and the documented vocabularies (compared case-insensitively,
# ignoring spaces), per table. InstallationStatus also accepts Installed and Pending, which Azure
# Update Manager-derived exports (and the demo estate) write.
REQUIRED_VALUES = ("TimeGenerated", "Computer")
VOCABULARIES: dict[str, dict[str, tuple[str, ...]]] = {
    "Update": {"UpdateState": ("Needed", "Installed", "Not needed")},
    "UpdateRunProgress": {
        "InstallationStatus": (
            "NotStarted", "InProgress", "Succeeded", "SucceededOnRetry", "Failed", "InstallFailed",
            "MaintenanceWindowExceeded", "NotIncluded", "Excluded", "Installed", "Pending",
        )
    },
}

_UTC_SUFFIX = re.compile(r"\s*\[UTC\]\s*$", re.IGNORECASE)


def la_files(estate_dir: Path, la_table: str) -> list[Path]:
    """Files of one table: the name starts with the table name and the next character is not a
    letter, so `Update*` does not pick up `UpdateSummary*`."""
    pattern = re.compile(rf"^{la_table}(?![A-Za-z]).*\.(csv|json)$", re.IGNORECASE)
    folder = estate_dir / "log_analytics"
    return sorted(p for p in folder.glob("*") if p.is_file() and pattern.match(p.name))


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _typed(column: str, la_type: str) -> str:
    """SQL turning the text column into its documented type (NULL when it does not parse)."""
    v = f"nullif(trim({_quote(column)}), '')"
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
    return f"nullif({_quote(column)}, '')"


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
            name = _UTC_SUFFIX.sub("", header)
            if name in columns and name not in present:
                present[name] = header
        select = ", ".join(f"{_quote(h)} AS {_quote(n)}" for n, h in present.items())
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
        select = ", ".join(_quote(n) for n in present)
        return f"SELECT {select or 'NULL AS _none'} FROM {reader}", present
    body = (
        "read_json($path, columns = {'tables': 'STRUCT(name VARCHAR, columns STRUCT(name VARCHAR, "
        f"type VARCHAR)[], rows JSON[][])[]'}}, maximum_object_size = {max_object_size(path)})"
    )
    fetched = conn.execute(
        f"SELECT list_transform(tables, lambda t: list_transform(t.columns, lambda c: c.name)) FROM {body}",
        {"path": str(path)},
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
            f"json_extract_string(r[{positions[n]}], '$') AS {_quote(n)}"
            if n in positions
            else f"NULL::VARCHAR AS {_quote(n)}"
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
) -> int:
    """Add the rows of every new or changed export of `la_table` in `log_analytics/` to `table`."""
    columns, required = TABLES[la_table]
    conn.execute(QUARANTINE_DDL)
    files = la_files(estate_dir, la_table)
    typed = {n: _DUCKDB_TYPES[t] for n, t in columns.items()}
    todo = plan_ingest(
        conn, table, typed, files, estate_dir, full_reload,
        extra_delete=f"DELETE FROM raw.quarantine WHERE source = '{table}' "
        "AND source_file IN (SELECT unnest($names))",
    )
    if LAST_INGEST[table].full_reload:
        conn.execute("DELETE FROM raw.quarantine WHERE source = ?", [table])
    if not files:
        if log is not None:
            log.warning(f"Log Analytics {la_table}: no export under log_analytics/; the table is empty")
        return 0
    vocabularies = VOCABULARIES.get(la_table, {})
    total = 0
    csv_groups: dict[tuple[str, ...], list[SourceFile]] = {}
    for f in todo:
        check_not_empty(f.path, f.name)
        header = _csv_header(f.path) if f.path.suffix.lower() == ".csv" else None
        if header is not None:
            csv_groups.setdefault(tuple(header), []).append(f)
    for header, group in csv_groups.items():
        total += _load_csv_group(conn, list(header), group, columns, required, table, ingest_run, vocabularies)
    for f in todo:
        if f.path.suffix.lower() != ".csv" or _csv_header(f.path) is None:
            total += _load_file(
                conn, f.path, estate_dir, columns, required, table, ingest_run, vocabularies, f.sha256
            )
    return total


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
        name = _UTC_SUFFIX.sub("", raw_name)
        if name in columns and name not in present:
            present[name] = f"c{index}"
    spec = "{" + ", ".join(f"'c{i}': 'VARCHAR'" for i in range(len(header))) + "}"
    reader = (
        f"read_csv(@SRC@, header = true, auto_detect = false, columns = {spec}, delim = ',', "
        f"quote = '\"', escape = '\"', strict_mode = true, null_padding = false, "
        f"max_line_size = {MAX_LINE_SIZE}@OPTS@)"
    )
    renamed = ", ".join(f"{c} AS {_quote(n)}" for n, c in present.items()) or "NULL AS _none"
    many = f"SELECT {renamed}, filename FROM {reader.replace('@SRC@', '$paths').replace('@OPTS@', ', filename = true')}"
    one = f"SELECT {renamed} FROM {reader.replace('@SRC@', '$path').replace('@OPTS@', '')}"
    missing = [c for c in required if c not in present]
    if missing:
        raise SourceFileError(f"{files[0].name}: missing column(s) {', '.join(missing)}")
    conditions = [c for _, c, _ in _problem_conditions(columns, list(present), vocabularies)]
    bad = " OR ".join(f"({c})" for c in conditions) or "false"
    typed = ", ".join(
        f"{_typed(c, t)}::{_DUCKDB_TYPES[t]} AS {_quote(c)}" if c in present else f"NULL::{_DUCKDB_TYPES[t]} AS {_quote(c)}"
        for c, t in columns.items()
    )
    params = {"datetime_formats": PORTAL_DATETIME_FORMATS, "paths": [str(f.path) for f in files]}
    try:
        execute(
            conn,
            f"CREATE OR REPLACE TEMP TABLE _la_typed AS SELECT {typed}, coalesce({bad}, false) AS _bad, "
            f"filename AS _path FROM ({many})",
            params,
        )
    except duckdb.Error as exc:
        raise diagnose(conn, files, one, exc, extra_check=_check_csv_shape) from exc
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
        conn.execute(
            f"CREATE OR REPLACE TEMP TABLE _la_text AS SELECT row_number() OVER () AS _row, * FROM ({source})",
            {"path": str(f.path)},
        )
    except duckdb.Error as exc:
        raise SourceFileError(f"{f.name}: cannot be read: {exc}") from exc
    try:
        _problems_into_quarantine(conn, f.name, columns, list(present), table, ingest_run, vocabularies, rows)
    finally:
        conn.execute("DROP TABLE IF EXISTS _la_text")
        conn.execute("DROP TABLE IF EXISTS _la_problems")


def quarantine_count(conn: duckdb.DuckDBPyConnection, source: str) -> int:
    """Rows of `source` (a raw table) set aside in raw.quarantine by the last load."""
    exists = conn.execute(
        "SELECT count(*) FROM information_schema.tables "
        "WHERE table_schema = 'raw' AND table_name = 'quarantine'"
    ).fetchall()[0][0]
    if not exists:
        return 0
    return conn.execute(
        'SELECT count(DISTINCT (source_file, "row")) FROM raw.quarantine WHERE source = ?', [source]
    ).fetchall()[0][0]


def _problem_conditions(
    columns: dict[str, str], present: list[str], vocabularies: dict[str, tuple[str, ...]]
) -> list[tuple[str, str, str]]:
    """(field, SQL condition true for a bad cell, reason SQL literal) for every check."""
    checks = []
    for column in present:
        la_type = columns[column]
        q = _quote(column)
        if la_type != "string":
            checks.append((column, f"nullif(trim({q}), '') IS NOT NULL AND {_typed(column, la_type)} IS NULL",
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
        f"SELECT _row, '{column}' AS field, {_quote(column)} AS raw_value, {reason} AS reason "
        f"FROM _la_text WHERE {condition}"
        for column, condition, reason in _problem_conditions(columns, present, vocabularies)
    ]
    return " UNION ALL ".join(parts) or (
        "SELECT NULL::BIGINT AS _row, '' AS field, '' AS raw_value, '' AS reason WHERE false"
    )


def _check_csv_shape(data: bytes, name: str) -> None:
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
        conn.execute(
            f"CREATE OR REPLACE TEMP TABLE _la_text AS SELECT row_number() OVER () AS _row, * FROM ({source})",
            {"path": str(path)},
        )
    except (duckdb.Error, SourceFileError) as exc:
        data = check_text_file(path, name)
        if is_csv:
            _check_csv_shape(data, name)
        if isinstance(exc, SourceFileError):
            raise
        raise SourceFileError(f"{name}: cannot be read: {exc}") from exc
    try:
        rows = conn.execute("SELECT count(*) FROM _la_text").fetchall()[0][0]
        bad_rows = _problems_into_quarantine(conn, name, columns, present, table, ingest_run, vocabularies, rows)
        params = {"datetime_formats": PORTAL_DATETIME_FORMATS}
        select = ", ".join(
            f"{_typed(c, t)}::{_DUCKDB_TYPES[t]}" if c in present else f"NULL::{_DUCKDB_TYPES[t]}"
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


def _problems_into_quarantine(
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
