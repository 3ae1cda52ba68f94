"""Offline loaders for the Azure side of the estate: VM inventory, Resource Graph rows, patch
operation envelopes (docs/estate.md, data-sources.md sections 5 and 6).

DuckDB reads every file itself (`read_json` with explicit column types); Python only lists the
files, hashes them and names the file in any error. Each loader replaces its `raw` table inside
the caller's transaction; a missing source gives an empty table with the same schema and a
warning.
"""

from __future__ import annotations

import hashlib
import logging
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
) -> int:
    """Insert the rows of one file (`select_sql` reads it as parameter $path) with provenance."""
    before = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    try:
        conn.execute(
            f"INSERT INTO {table} SELECT *, $source_file, $sha, $run FROM ({select_sql})",
            {
                "path": str(path),
                "source_file": relative_name(path, base),
                "sha": sha256_file(path),
                "run": ingest_run,
            },
        )
    except duckdb.Error as exc:
        raise SourceFileError(f"{relative_name(path, base)}: cannot be read: {exc}") from exc
    return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] - before


def _require(
    conn: duckdb.DuckDBPyConnection, table: str, path: Path, base: Path, condition: str, what: str
) -> None:
    """Fail naming the file and the first offending row when `condition` holds for a row."""
    bad = conn.execute(
        f"SELECT count(*) FROM {table} WHERE source_file = ? AND ({condition})",
        [relative_name(path, base)],
    ).fetchone()[0]
    if bad:
        raise SourceFileError(f"{relative_name(path, base)}: {bad} row(s) {what}")


def _warn_missing(log: logging.Logger | None, what: str, where: Path) -> None:
    if log is not None:
        log.warning(f"{what}: no file under {where.name}/; the table is empty")


def load_virtual_machines(
    conn: duckdb.DuckDBPyConnection,
    estate_dir: Path,
    table: str,
    ingest_run: str,
    log: logging.Logger | None = None,
) -> int:
    """`azure/virtual_machines.json`: `az vm list --show-details` (array) or an ARM list body."""
    create_table(conn, table, VIRTUAL_MACHINE_COLUMNS)
    path = estate_dir / "azure" / "virtual_machines.json"
    if not path.is_file():
        _warn_missing(log, "VM inventory (azure/virtual_machines.json)", estate_dir / "azure")
        return 0
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
    count = _insert(conn, table, select, path, estate_dir, ingest_run)
    _require(conn, table, path, estate_dir, "id IS NULL OR id = ''", "without an 'id'")
    return count


def resource_graph_files(estate_dir: Path, arg_table: str) -> list[Path]:
    folder = estate_dir / "azure" / "resource_graph"
    return sorted(p for p in folder.glob(f"{arg_table}*.json") if p.is_file())


def load_resource_graph(
    conn: duckdb.DuckDBPyConnection,
    estate_dir: Path,
    arg_table: str,
    table: str,
    ingest_run: str,
    log: logging.Logger | None = None,
) -> int:
    """Rows of one Resource Graph table from `az graph query` output or a bare JSON array."""
    if arg_table not in RESOURCE_GRAPH_TABLES:
        raise ValueError(f"unknown Resource Graph table {arg_table!r}")
    create_table(conn, table, RESOURCE_GRAPH_COLUMNS)
    files = resource_graph_files(estate_dir, arg_table)
    if not files:
        _warn_missing(log, f"Resource Graph {arg_table}", estate_dir / "azure" / "resource_graph")
        return 0
    columns = _columns_literal(RESOURCE_GRAPH_COLUMNS)
    names = ", ".join(f'"{n}"' for n in RESOURCE_GRAPH_COLUMNS)
    total = 0
    for path in files:
        if json_top_level(path) == "[":
            select = f"SELECT {names} FROM read_json($path, format='array', columns={columns})"
        else:
            select = (
                f"SELECT unnest(r) FROM (SELECT unnest(data) AS r FROM read_json($path, "
                f"columns={{'data': '{_struct(RESOURCE_GRAPH_COLUMNS)}[]'}}, "
                f"maximum_object_size={max_object_size(path)}))"
            )
        total += _insert(conn, table, select, path, estate_dir, ingest_run)
        _require(
            conn, table, path, estate_dir, "id IS NULL OR type IS NULL", "without 'id' or 'type'"
        )
    return total


def patch_operation_files(estate_dir: Path) -> list[Path]:
    return sorted(p for p in (estate_dir / "azure" / "patch_operations").glob("*.json") if p.is_file())


def load_patch_operations(
    conn: duckdb.DuckDBPyConnection,
    estate_dir: Path,
    table: str,
    ingest_run: str,
    log: logging.Logger | None = None,
) -> int:
    """`azure/patch_operations/*.json`: {"resourceId", "operation", "result"} (one or an array)."""
    create_table(conn, table, PATCH_OPERATION_COLUMNS)
    files = patch_operation_files(estate_dir)
    if not files:
        _warn_missing(log, "Patch operations", estate_dir / "azure" / "patch_operations")
        return 0
    columns = _columns_literal(PATCH_OPERATION_COLUMNS)
    total = 0
    for path in files:
        shape = "array" if json_top_level(path) == "[" else "auto"
        select = (
            f"SELECT resourceId, operation, result FROM read_json($path, format='{shape}', "
            f"columns={columns}, maximum_object_size={max_object_size(path)})"
        )
        total += _insert(conn, table, select, path, estate_dir, ingest_run)
        _require(
            conn,
            table,
            path,
            estate_dir,
            "resourceId IS NULL OR result IS NULL OR operation NOT IN "
            + "(" + ", ".join(f"'{op}'" for op in PATCH_OPERATIONS) + ")",
            "without resourceId/result or with an operation other than assessPatches/installPatches",
        )
    return total
