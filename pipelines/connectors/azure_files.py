"""Offline loaders for the Azure side of the estate: VM inventory, Resource Graph rows, patch
operation envelopes (docs/estate.md, data-sources.md sections 5 and 6).

DuckDB reads every file itself (`read_json` with explicit column types); Python only lists the
files, hashes them and names the file in any error. Each loader replaces its `raw` table inside
the caller's transaction; a missing source gives an empty table with the same schema and a
warning.

Bad input (tests/test_bad_inputs.py): these files are small and exact API answers, so any problem
fails the whole load (the caller's transaction keeps the last good state) with a SourceFileError
naming the file and, where it applies, the row (1 = first element of the file's array / `value` /
`data` list) and the field. Checked: UTF-8 (the byte offset of the first bad byte), an empty
file, JSON syntax, required ids, the documented enumerations (operation, Resource Graph `type`,
run `status`, patch `installationState`) and timestamps inside `properties` / `result`. Legal
oddities load as received: identical duplicate rows (downstream keys dedupe them), mixed
time-zone offsets (converted to UTC downstream), any text (HTML, formulas) stored verbatim.
The same VM id listed twice with different content is an error (which copy is true is unknown).

Incremental ingestion: raw tables accumulate. A file whose (name, SHA-256) is already in the
table is skipped; a file whose SHA-256 is already there under another name (a copy, a rename)
adds nothing; a changed file with a known name replaces only its own rows. `full_reload=True`
rebuilds the table from the files present. Files of one kind are read by ONE DuckDB statement
(a list of paths, `filename=true`); only when it fails is each file checked on its own (UTF-8,
then a per-file read) so that the error still names the file, and the row-level checks run once
over the new rows, locating the first offending file/row only on failure.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

# Provenance columns every raw table ends with (architecture.md, "Ingest").
PROVENANCE = {"source_file": "VARCHAR", "source_sha256": "VARCHAR", "ingest_run": "VARCHAR"}


VIRTUAL_MACHINE_COLUMNS = {"id": "VARCHAR", "name": "VARCHAR", "resource": "JSON"}

# Resource Graph row columns (data-sources.md section 5); the rest are blank for these tables.
RESOURCE_GRAPH_COLUMNS = {
    "id": "VARCHAR",
    "name": "VARCHAR",
    "type": "VARCHAR",
    "tenantId": "VARCHAR",
    "location": "VARCHAR",
    "resourceGroup": "VARCHAR",
    "subscriptionId": "VARCHAR",
    "properties": "JSON",
}

PATCH_OPERATION_COLUMNS = {"resourceId": "VARCHAR", "operation": "VARCHAR", "result": "JSON"}
PATCH_OPERATIONS = ("assessPatches", "installPatches")

RESOURCE_GRAPH_TABLES = ("patchassessmentresources", "patchinstallationresources")


class SourceFileError(ValueError):
    """A source file that cannot be read as its documented format; the message names it."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def relative_name(path: Path, base: Path) -> str:
    """The file as recorded in `source_file`: relative to the estate, so no machine paths."""
    try:
        return path.resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return path.name


def check_text_file(path: Path, name: str) -> bytes:
    """The file's bytes (gunzipped) after checking it is non-empty UTF-8; errors name the file
    and the byte offset and line of the first invalid byte."""
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise SourceFileError(f"{name}: not a readable gzip file ({exc})") from exc
    if not data.lstrip(b"\xef\xbb\xbf \t\r\n"):
        raise SourceFileError(f"{name}: empty file")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise SourceFileError(
            f"{name}: not UTF-8: byte 0x{data[exc.start]:02x} at byte offset {exc.start} "
            f"(line {line})"
        ) from exc
    return data


def json_top_level(path: Path) -> str:
    """'[' or '{': the first significant character of a JSON file (a BOM is skipped)."""
    with path.open("rb") as handle:
        head = handle.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    if not head or head[:1] not in (b"[", b"{"):
        raise SourceFileError(f"{path.name}: not a JSON array or object")
    return head[:1].decode()


def execute(
    conn: duckdb.DuckDBPyConnection, sql: str, params: dict[str, Any]
) -> duckdb.DuckDBPyConnection:
    """Run `sql` binding only the named parameters it uses (DuckDB rejects unused ones)."""
    return conn.execute(sql, {k: v for k, v in params.items() if f"${k}" in sql} or None)


def max_object_size(path: Path) -> int:
    """DuckDB's maximum_object_size for a file read as one JSON document (`{"data": [...]}`):
    the file's size, so large exports load while small ones do not reserve a large buffer."""
    return max(16 * 2**20, path.stat().st_size + 2**20)


def create_table(conn: duckdb.DuckDBPyConnection, table: str, columns: dict[str, str]) -> None:
    spec = ", ".join(f'"{name}" {kind}' for name, kind in {**columns, **PROVENANCE}.items())
    conn.execute(f"CREATE OR REPLACE TABLE {table} ({spec})")


def table_columns(conn: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    schema, name = table.split(".")
    return [
        r[0]
        for r in conn.execute(
            "SELECT column_name FROM duckdb_columns() WHERE schema_name = ? AND table_name = ? "
            "ORDER BY column_index",
            [schema, name],
        ).fetchall()
    ]


@dataclass
class IngestStats:
    """What one load did: files read, skipped as unchanged or as copies, replaced."""

    files_seen: int = 0
    files_read: list[str] = field(default_factory=list)
    files_unchanged: int = 0
    files_copies: list[str] = field(default_factory=list)
    files_replaced: list[str] = field(default_factory=list)
    full_reload: bool = False

    def metadata(self) -> dict:
        return {
            "files_seen": self.files_seen,
            "files_read": len(self.files_read),
            "files_unchanged": self.files_unchanged,
            "files_copies_skipped": len(self.files_copies),
            "files_replaced": len(self.files_replaced),
            "full_reload": self.full_reload,
        }


# Every file read into a raw table (also those that gave no rows), so reruns skip them.
MANIFEST_DDL = (
    "CREATE TABLE IF NOT EXISTS raw.ingested_files "
    "(raw_table VARCHAR, source_file VARCHAR, source_sha256 VARCHAR)"
)

# The last load of each raw table in this process (the assets report it as metadata).
LAST_INGEST: dict[str, IngestStats] = {}


@dataclass(frozen=True)
class SourceFile:
    path: Path
    name: str
    sha256: str


def plan_ingest(
    conn: duckdb.DuckDBPyConnection,
    table: str,
    columns: dict[str, str],
    files: list[Path],
    base: Path,
    full_reload: bool = False,
    extra_delete: str | None = None,
) -> list[SourceFile]:
    """The files to read into `table` (created or, on a full reload / schema change, replaced).

    Unchanged files and copies of ingested files are skipped; the rows of a changed file are
    deleted here (and, with `extra_delete`, its rows of another table: SQL taking the name list
    as $names)."""
    stats = IngestStats(files_seen=len(files), full_reload=full_reload)
    LAST_INGEST[table] = stats
    expected = [*columns, *PROVENANCE]
    known: dict[str, str] = {}
    conn.execute(MANIFEST_DDL)
    if full_reload or table_columns(conn, table) != expected:
        create_table(conn, table, columns)
        conn.execute("DELETE FROM raw.ingested_files WHERE raw_table = ?", [table])
        stats.full_reload = True
    else:
        # Files that gave no rows are remembered by the manifest, not by the table.
        known = dict(
            conn.execute(
                f"SELECT source_file, min(source_sha256) FROM {table} GROUP BY source_file "
                "UNION ALL SELECT source_file, source_sha256 FROM raw.ingested_files WHERE raw_table = ?",
                [table],
            ).fetchall()
        )
    known_shas = set(known.values())
    todo: list[SourceFile] = []
    for path in files:
        name = relative_name(path, base)
        sha = sha256_file(path)
        if known.get(name) == sha:
            stats.files_unchanged += 1
            continue
        if name in known:
            stats.files_replaced.append(name)
        if sha in known_shas:
            stats.files_copies.append(name)
            continue
        todo.append(SourceFile(path, name, sha))
    stats.files_read = [f.name for f in todo]
    changed = [f.name for f in todo] + stats.files_replaced
    if changed:
        conn.execute("DELETE FROM raw.ingested_files WHERE raw_table = $table AND source_file IN "
                     "(SELECT unnest($names))", {"table": table, "names": changed})
    if todo:
        conn.execute("INSERT INTO raw.ingested_files SELECT $table, unnest($names), unnest($shas)",
                     {"table": table, "names": [f.name for f in todo], "shas": [f.sha256 for f in todo]})
    if stats.files_replaced:
        conn.execute(f"DELETE FROM {table} WHERE source_file IN (SELECT unnest($names))",
                     {"names": stats.files_replaced})
    if extra_delete and (todo or stats.files_replaced):
        conn.execute(extra_delete, {"names": [f.name for f in todo] + stats.files_replaced})
    return todo


def check_not_empty(path: Path, name: str) -> None:
    """Cheap checks before DuckDB reads the file: not empty, and gzip is checked in full."""
    with path.open("rb") as handle:
        head = handle.read(65536)
    if head[:2] == b"\x1f\x8b":
        check_text_file(path, name)
        return
    if not head.lstrip(b"\xef\xbb\xbf \t\r\n") and len(head) < 65536:
        raise SourceFileError(f"{name}: empty file")


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
) -> None:
    """INSERT the rows of every file in one statement: `select_many` reads the list $paths with
    a `filename` column last; provenance comes from the file lists."""
    params = {
        "paths": [str(f.path) for f in files],
        "names": [f.name for f in files],
        "shas": [f.sha256 for f in files],
        "run": ingest_run,
    }
    try:
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
    checks: list[tuple[str, str, str, str]],
) -> None:
    """Row-local checks over the new rows in one scan; on failure the first offending file is
    examined by `_require` (file, row, field)."""
    if not files:
        return
    condition = " OR ".join(f"({c})" for _, c, _, _ in checks)
    bad = {
        r[0]
        for r in conn.execute(
            f"SELECT DISTINCT source_file FROM {table} "
            f"WHERE source_file IN (SELECT unnest($names)) AND ({condition})",
            {"names": [f.name for f in files]},
        ).fetchall()
    }
    for f in files:
        if f.name in bad:
            _require(conn, table, f.path, base, checks)
    if bad:
        raise SourceFileError(f"{sorted(bad)[0]}: a row fails a check")


def _struct(columns: dict[str, str]) -> str:
    return "STRUCT(" + ", ".join(f'"{n}" {t}' for n, t in columns.items()) + ")"


def _columns_literal(columns: dict[str, str]) -> str:
    return "{" + ", ".join(f"'{n}': '{t}'" for n, t in columns.items()) + "}"


def _insert(
    conn: duckdb.DuckDBPyConnection,
    table: str,
    select_sql: str,
    path: Path,
    base: Path,
    ingest_run: str,
    sha: str | None = None,
) -> int:
    """Insert the rows of one file (`select_sql` reads it as parameter $path) with provenance."""
    check_text_file(path, relative_name(path, base))
    before = conn.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]
    try:
        conn.execute(
            f"INSERT INTO {table} SELECT *, $source_file, $sha, $run FROM ({select_sql})",
            {
                "path": str(path),
                "source_file": relative_name(path, base),
                "sha": sha or sha256_file(path),
                "run": ingest_run,
            },
        )
    except duckdb.Error as exc:
        raise SourceFileError(f"{relative_name(path, base)}: cannot be read: {exc}") from exc
    return conn.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0] - before


def _require(
    conn: duckdb.DuckDBPyConnection,
    table: str,
    path: Path,
    base: Path,
    checks: list[tuple[str, str, str, str]],
) -> None:
    """Fail naming the file, the first offending row and the field. Each check is
    (field, SQL condition that is true for a bad row, SQL giving the offending value, reason)."""
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


def _in(values: tuple[str, ...]) -> str:
    return "(" + ", ".join(f"'{v.lower()}'" for v in values) + ")"


def _bad_timestamp(json_path: str) -> str:
    return f"({json_path} IS NOT NULL AND try_cast({json_path} AS TIMESTAMPTZ) IS NULL)"


# Documented enumerations (data-sources.md 5 and 6), compared case-insensitively.
RUN_STATUSES = ("Unknown", "NotStarted", "InProgress", "Failed", "Succeeded", "CompletedWithWarnings")
INSTALLATION_STATES = ("Unknown", "Installed", "Failed", "Pending", "NotSelected", "Excluded")
ASSESSMENT_STATES = ("Unknown", "Available")

VIRTUAL_MACHINE_CHECKS = [
    ("id", "id IS NULL OR trim(id) = ''", "id", "a VM needs an 'id'"),
    ("id", "json_type(resource->'id') <> 'VARCHAR'", "resource->'id'", "must be a string"),
    ("name", "json_type(resource->'name') NOT IN ('VARCHAR', 'NULL')", "resource->'name'",
     "must be a string"),
    # The same machine twice with different content: which copy is true is unknown.
    ("id", "count(DISTINCT resource::VARCHAR) OVER (PARTITION BY lower(id)) > 1", "id",
     "listed more than once with different content"),
]


def resource_graph_checks(arg_table: str) -> list[tuple[str, str, str, str]]:
    kind = "patchassessmentresults" if arg_table == "patchassessmentresources" else "patchinstallationresults"
    parent = f"regexp_full_match(lower(type), '.*/{kind}')"
    child = f"regexp_full_match(lower(type), '.*/{kind}/softwarepatches')"
    checks = [
        ("id", "id IS NULL OR trim(id) = ''", "id", "a row needs an 'id'"),
        ("type", "type IS NULL OR NOT regexp_full_match(lower(type), "
         f"'microsoft\\.(compute/virtualmachines|hybridcompute/machines)/{kind}(/softwarepatches)?')",
         "type", f"not a {arg_table} type (…/{kind} or …/{kind}/softwarepatches)"),
        ("properties", "properties IS NOT NULL AND json_type(properties) NOT IN ('OBJECT', 'NULL')",
         "properties", "must be an object"),
        ("properties.status", f"{parent} AND properties->>'status' IS NOT NULL AND "
         f"lower(properties->>'status') NOT IN {_in(RUN_STATUSES)}", "properties->>'status'",
         "must be one of " + "/".join(RUN_STATUSES)),
    ]
    for field_name in ("lastModifiedDateTime", "startDateTime"):
        checks.append((f"properties.{field_name}", _bad_timestamp(f"properties->>'{field_name}'"),
                       f"properties->>'{field_name}'", "not an ISO 8601 timestamp"))
    if kind == "patchinstallationresults":
        checks.append((
            "properties.installationState",
            f"{child} AND properties->>'installationState' IS NOT NULL AND "
            f"lower(properties->>'installationState') NOT IN {_in(INSTALLATION_STATES)}",
            "properties->>'installationState'", "must be one of " + "/".join(INSTALLATION_STATES),
        ))
    return checks


_RESULT = "coalesce(result->'properties'->'output', result)"
_PATCHES = f"from_json(coalesce({_RESULT}->'availablePatches', {_RESULT}->'patches', '[]'), '[\"JSON\"]')"
PATCH_OPERATION_CHECKS = [
    ("resourceId", "resourceId IS NULL OR trim(resourceId) = ''", "resourceId",
     "an operation needs the VM's 'resourceId'"),
    ("operation", "operation IS NULL OR operation NOT IN ('assessPatches', 'installPatches')",
     "operation", "must be assessPatches or installPatches"),
    ("result", "result IS NULL OR json_type(result) <> 'OBJECT'", "result",
     "must be the operation's result object"),
    ("result.status", f"{_RESULT}->>'status' IS NOT NULL AND "
     f"lower({_RESULT}->>'status') NOT IN {_in(RUN_STATUSES)}", f"{_RESULT}->>'status'",
     "must be one of " + "/".join(RUN_STATUSES)),
    *(
        (f"result.{f}", _bad_timestamp(f"{_RESULT}->>'{f}'"), f"{_RESULT}->>'{f}'",
         "not an ISO 8601 timestamp")
        for f in ("startDateTime", "lastModifiedDateTime")
    ),
    ("result.patches[].installationState",
     f"operation = 'installPatches' AND len(list_filter({_PATCHES}, lambda p: "
     f"p->>'installationState' IS NOT NULL AND "
     f"lower(p->>'installationState') NOT IN {_in(INSTALLATION_STATES)})) > 0",
     f"list_filter({_PATCHES}, lambda p: lower(p->>'installationState') NOT IN "
     f"{_in(INSTALLATION_STATES)})[1]->>'installationState'",
     "must be one of " + "/".join(INSTALLATION_STATES)),
    ("result.availablePatches[].assessmentState",
     f"operation = 'assessPatches' AND len(list_filter({_PATCHES}, lambda p: "
     f"p->>'assessmentState' IS NOT NULL AND "
     f"lower(p->>'assessmentState') NOT IN {_in(ASSESSMENT_STATES)})) > 0",
     f"list_filter({_PATCHES}, lambda p: lower(p->>'assessmentState') NOT IN "
     f"{_in(ASSESSMENT_STATES)})[1]->>'assessmentState'",
     "must be one of " + "/".join(ASSESSMENT_STATES)),
]


def _warn_missing(log: logging.Logger | None, what: str, where: Path) -> None:
    if log is not None:
        log.warning(f"{what}: no file under {where.name}/; the table is empty")


# Dated inventory snapshots: azure/virtual_machines/virtual_machines-<YYYYMMDDTHHMMSSZ>.json, the
# capture time (UTC) in the name; azure/virtual_machines.json is an undated snapshot.
VM_SNAPSHOT_DIR = ("azure", "virtual_machines")
VM_SNAPSHOT_NAME = re.compile(r"virtual_machines-\d{8}T\d{6}Z\.json")


def virtual_machine_files(estate_dir: Path) -> list[Path]:
    """The undated snapshot (if any) and every dated one; a file in the snapshot folder without
    the capture time in its name is an error (its place in the history would be unknown)."""
    files = [estate_dir / "azure" / "virtual_machines.json"]
    files = [p for p in files if p.is_file()]
    folder = estate_dir.joinpath(*VM_SNAPSHOT_DIR)
    for path in sorted(p for p in folder.glob("*.json") if p.is_file()):
        if not VM_SNAPSHOT_NAME.fullmatch(path.name):
            raise SourceFileError(
                f"{relative_name(path, estate_dir)}: a dated inventory snapshot is named "
                "virtual_machines-YYYYMMDDTHHMMSSZ.json (capture time in UTC)"
            )
        files.append(path)
    return files


def load_virtual_machines(
    conn: duckdb.DuckDBPyConnection,
    estate_dir: Path,
    table: str,
    ingest_run: str,
    log: logging.Logger | None = None,
    full_reload: bool = False,
) -> int:
    """`azure/virtual_machines.json` and the dated `azure/virtual_machines/*.json` snapshots:
    `az vm list --show-details` (array) or an ARM list body.

    Each snapshot is one file: a changed file replaces its own rows, earlier snapshots stay (the
    configuration history is built from them)."""
    files = virtual_machine_files(estate_dir)
    if not files:
        create_table(conn, table, VIRTUAL_MACHINE_COLUMNS)
        LAST_INGEST[table] = IngestStats(full_reload=True)
        _warn_missing(log, "VM inventory (azure/virtual_machines.json)", estate_dir / "azure")
        return 0
    count = 0
    for todo in plan_ingest(conn, table, VIRTUAL_MACHINE_COLUMNS, files, estate_dir, full_reload):
        path = todo.path
        check_text_file(path, relative_name(path, estate_dir))
        if json_top_level(path) == "[":
            select = (
                "SELECT json->>'id', json->>'name', json "
                f"FROM read_json_objects($path, format='array', maximum_object_size={max_object_size(path)})"
            )
        else:
            select = (
                "SELECT v->>'id', v->>'name', v FROM ("
                "SELECT unnest(value) AS v FROM read_json($path, columns={'value': 'JSON[]'}, "
                f"maximum_object_size={max_object_size(path)}))"
            )
        count += _insert(conn, table, select, path, estate_dir, ingest_run, todo.sha256)
        _require(conn, table, path, estate_dir, VIRTUAL_MACHINE_CHECKS)
    return count


def resource_graph_files(estate_dir: Path, arg_table: str) -> list[Path]:
    folder = estate_dir / "azure" / "resource_graph"
    return sorted(p for p in folder.glob(f"{arg_table}*.json") if p.is_file())


def _by_shape(files: list[SourceFile]) -> dict[str, list[SourceFile]]:
    groups: dict[str, list[SourceFile]] = {}
    for f in files:
        check_not_empty(f.path, f.name)
        groups.setdefault(json_top_level(f.path), []).append(f)
    return groups


def _max_size(files: list[SourceFile]) -> int:
    return max(max_object_size(f.path) for f in files)


def load_resource_graph(
    conn: duckdb.DuckDBPyConnection,
    estate_dir: Path,
    arg_table: str,
    table: str,
    ingest_run: str,
    log: logging.Logger | None = None,
    full_reload: bool = False,
) -> int:
    """Rows of one Resource Graph table from `az graph query` output or a bare JSON array."""
    if arg_table not in RESOURCE_GRAPH_TABLES:
        raise ValueError(f"unknown Resource Graph table {arg_table!r}")
    files = resource_graph_files(estate_dir, arg_table)
    todo = plan_ingest(conn, table, RESOURCE_GRAPH_COLUMNS, files, estate_dir, full_reload)
    if not files:
        _warn_missing(log, f"Resource Graph {arg_table}", estate_dir / "azure" / "resource_graph")
        return 0
    if not todo:
        return 0
    columns = _columns_literal(RESOURCE_GRAPH_COLUMNS)
    names = ", ".join(f'"{n}"' for n in RESOURCE_GRAPH_COLUMNS)
    before = _count(conn, table)
    for shape, group in _by_shape(todo).items():
        size = _max_size(group)
        if shape == "[":
            select = (f"SELECT {names}@FN@ FROM read_json(@SRC@, format='array', "
                      f"columns={columns}, maximum_object_size={size}@OPTS@)")
        else:
            select = (
                "SELECT unnest(r)@FN@ FROM (SELECT unnest(data) AS r@FN@ FROM read_json(@SRC@, "
                f"columns={{'data': '{_struct(RESOURCE_GRAPH_COLUMNS)}[]'}}, "
                f"maximum_object_size={size}@OPTS@))"
            )
        many, one = _many_and_one(select)
        bulk_insert(conn, table, many, one, group, ingest_run)
    require_bulk(conn, table, todo, estate_dir, resource_graph_checks(arg_table))
    return _count(conn, table) - before


POPULATION_FILE_COLUMNS = {
    "arg_table": "VARCHAR", "source_file": "VARCHAR", "source_sha256": "VARCHAR", "subscriptions": "VARCHAR[]",
    "reported_rows": "BIGINT", "fetched_rows": "BIGINT",
}


def resource_graph_population_files(conn: duckdb.DuckDBPyConnection, estate_dir: Path) -> None:
    """Temporary table `population_files`: what each Resource Graph file says of its population,
    `totalRecords` (or `total_records`, as az prints it) and `count`, for the completeness table.
    Its SHA-256 ties it to the rows loaded: a renamed or copied file is held under its first name."""
    spec = ", ".join(f"{name} {kind}" for name, kind in POPULATION_FILE_COLUMNS.items())
    conn.execute(f"CREATE OR REPLACE TEMP TABLE population_files ({spec})")
    for arg_table in RESOURCE_GRAPH_TABLES:
        files = resource_graph_files(estate_dir, arg_table)
        objects = [p for p in files if p.stat().st_size and json_top_level(p) == "{"]
        for path in files:
            if path not in objects:
                conn.execute("INSERT INTO population_files (arg_table, source_file, source_sha256) "
                             "VALUES ($t, $f, $sha)",
                             {"t": arg_table, "f": relative_name(path, estate_dir), "sha": sha256_file(path)})
        for path in objects:
            conn.execute(
                "INSERT INTO population_files SELECT $t, $f, $sha, subscriptions, "
                "coalesce(totalRecords, total_records), count FROM read_json($path, columns="
                "{'totalRecords': 'BIGINT', 'total_records': 'BIGINT', 'count': 'BIGINT', "
                f"'subscriptions': 'VARCHAR[]'}}, maximum_object_size={max_object_size(path)})",
                {"t": arg_table, "f": relative_name(path, estate_dir), "sha": sha256_file(path),
                 "path": str(path)},
            )


def _many_and_one(select: str) -> tuple[str, str]:
    """The SELECT over the list $paths (with a filename column) and over one file $path."""
    many = select.replace("@SRC@", "$paths").replace("@OPTS@", ", filename=true").replace("@FN@", ", filename")
    one = select.replace("@SRC@", "$path").replace("@OPTS@", "").replace("@FN@", "")
    return many, one


def _count(conn: duckdb.DuckDBPyConnection, table: str) -> int:
    return conn.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]


ARM_RESOURCE_COLUMNS = {"id": "VARCHAR", "name": "VARCHAR", "type": "VARCHAR", "location": "VARCHAR",
                        "properties": "JSON"}


def load_arm_folder(
    conn: duckdb.DuckDBPyConnection,
    estate_dir: Path,
    folder: tuple[str, ...],
    table: str,
    checks: list[tuple[str, str, str, str]],
    what: str,
    ingest_run: str,
    log: logging.Logger | None = None,
    full_reload: bool = False,
) -> int:
    """New or changed `*.json` files of an estate folder of ARM resources into `table`, one row
    per resource (ARM_RESOURCE_COLUMNS): ARM list bodies {"value": [...]}, `az graph query`
    output {"data": [...]} or bare arrays; each file then passes `checks` (see _require)."""
    where = estate_dir.joinpath(*folder)
    files = sorted(p for p in where.glob("*.json") if p.is_file())
    todo = plan_ingest(conn, table, ARM_RESOURCE_COLUMNS, files, estate_dir, full_reload)
    if not files:
        create_table(conn, table, ARM_RESOURCE_COLUMNS)
        _warn_missing(log, what, where)
        return 0
    count = 0
    fields = ", ".join(f"v->>'{c}'" if t == "VARCHAR" else f"v->'{c}'" for c, t in ARM_RESOURCE_COLUMNS.items())
    for item in todo:
        path = item.path
        check_text_file(path, relative_name(path, estate_dir))
        size = max_object_size(path)
        if json_top_level(path) == "[":
            rows = f"SELECT json AS v FROM read_json_objects($path, format='array', maximum_object_size={size})"
        else:
            rows = (
                "SELECT unnest(coalesce(value, data)) AS v FROM read_json($path, "
                f"columns={{'value': 'JSON[]', 'data': 'JSON[]'}}, maximum_object_size={size})"
            )
        count += _insert(conn, table, f"SELECT {fields} FROM ({rows})", path, estate_dir, ingest_run, item.sha256)
        _require(conn, table, path, estate_dir, checks)
    return count


def patch_operation_files(estate_dir: Path) -> list[Path]:
    return sorted(p for p in (estate_dir / "azure" / "patch_operations").glob("*.json") if p.is_file())


def load_patch_operations(
    conn: duckdb.DuckDBPyConnection,
    estate_dir: Path,
    table: str,
    ingest_run: str,
    log: logging.Logger | None = None,
    full_reload: bool = False,
) -> int:
    """`azure/patch_operations/*.json`: {"resourceId", "operation", "result"} (one or an array)."""
    files = patch_operation_files(estate_dir)
    todo = plan_ingest(conn, table, PATCH_OPERATION_COLUMNS, files, estate_dir, full_reload)
    if not files:
        _warn_missing(log, "Patch operations", estate_dir / "azure" / "patch_operations")
        return 0
    if not todo:
        return 0
    columns = _columns_literal(PATCH_OPERATION_COLUMNS)
    before = _count(conn, table)
    for shape, group in _by_shape(todo).items():
        fmt = "array" if shape == "[" else "auto"
        select = (
            "SELECT resourceId, operation, result@FN@ FROM read_json(@SRC@, "
            f"format='{fmt}', columns={columns}, maximum_object_size={_max_size(group)}@OPTS@)"
        )
        many, one = _many_and_one(select)
        bulk_insert(conn, table, many, one, group, ingest_run)
    require_bulk(conn, table, todo, estate_dir, PATCH_OPERATION_CHECKS)
    return _count(conn, table) - before
