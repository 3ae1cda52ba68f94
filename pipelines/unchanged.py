"""Skip a whole-fleet build whose inputs did not change since its last build.

A build's fingerprint is the md5 of everything its result depends on: the text of the SQL it
runs (and of the shared macros, `warehouse.SQL_MACROS`), the values it binds (the evaluation
date among them), the settings and policy it reads, and the version of every table it reads.
`staging.build_fingerprints` keeps, per table, the fingerprint of its last build and the run that
built it; when a new run computes the same fingerprint and the tables are still there, the asset
does not rebuild: it materializes with the same `dg.DataVersion` and metadata saying since which
run the table is unchanged.

A table's version is cheap to read:
- a table built under this mechanism: the fingerprint of its last build (kept as long as it is
  unchanged, so what reads it can skip too);
- a raw table: its rows' files and their sha256 (`source_file`, `source_sha256`, read as received);
- any other table: its row count and the sum of its rows' hashes. Within one run such a table,
  if it is an asset, is hashed once: only the step that builds it writes it, before every step
  (or table of the same step) that reads it, so the version read first holds for the rest of the run.

The state lives in the warehouse, not in the Dagster instance, on purpose: the warehouse can be
replaced, rebuilt or copied while the instance stays (or the instance be ephemeral, as in
`patchledger run` without DAGSTER_HOME and in the benchmark), and a fingerprint must describe the
tables it skips over, wherever they are.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import dagster as dg
import duckdb

from pipelines.warehouse import SQL_MACROS, _checked, read_sql, sql_literal, table_exists

FINGERPRINTS = "staging.build_fingerprints"
FINGERPRINTS_DDL = (
    f"CREATE TABLE IF NOT EXISTS {FINGERPRINTS} "
    "(target VARCHAR, fingerprint VARCHAR, dagster_run_id VARCHAR, built_at TIMESTAMPTZ)"
)
FINGERPRINTS_COMMENT = (
    "Bookkeeping of the builds that skip when their inputs did not change (pipelines/unchanged.py): "
    "per table, the fingerprint of its last build (SQL, bound values, settings, input table versions), "
    "the Dagster run that built it and when."
)


@dataclass(frozen=True)
class Build:
    """What a build of `targets` depends on, and whether its last build had the same."""

    targets: tuple[str, ...]
    fingerprint: str
    since_run: str | None  # the run of the unchanged build, None when it must rebuild

    @property
    def unchanged(self) -> bool:
        return self.since_run is not None

    def metadata(self) -> dict:
        """The asset's metadata about it: unchanged (since which run) or rebuilt."""
        result = {"unchanged": dg.MetadataValue.bool(self.unchanged),
                  "inputs_fingerprint": dg.MetadataValue.text(self.fingerprint)}
        if self.unchanged:
            result["unchanged_since_run"] = dg.MetadataValue.dagster_run(self.since_run)
        return result

    @property
    def data_version(self) -> dg.DataVersion:
        return dg.DataVersion(self.fingerprint)


# The row-hash versions of asset tables read in the current run (module docstring): run id, versions.
_run_versions: dict[str, Any] = {"run": None, "versions": {}}


def _versions_of_run(context: dg.AssetExecutionContext) -> dict[str, str]:
    """The versions already read in this run, and which tables may be kept there (assets only:
    a table several steps write, such as a manifest, is never kept)."""
    run_id = context.run.run_id
    if _run_versions["run"] != run_id:
        assets = {".".join(k.path) for k in context.job_def.asset_layer.executable_asset_keys if len(k.path) == 2}
        _run_versions.update(run=run_id, versions={}, assets=assets)
    return _run_versions


def table_version(conn: duckdb.DuckDBPyConnection, table: str, run: dict | None = None) -> str:
    """A string that changes whenever `table`'s content may have changed (module docstring);
    `run` the versions of the current run (`_versions_of_run`)."""
    if run is not None and table in run["versions"]:
        return run["versions"][table]
    if not table_exists(conn, _checked(table)):
        return "absent"
    conn.execute(FINGERPRINTS_DDL)
    recorded = conn.execute(f"SELECT fingerprint FROM {FINGERPRINTS} WHERE target = ?", [table]).fetchall()
    if recorded:
        return f"built:{recorded[0][0]}"
    schema, name = table.split(".")
    columns = [c for (c,) in conn.execute(
        "SELECT column_name FROM duckdb_columns() WHERE schema_name = ? AND table_name = ? ORDER BY column_index",
        [schema, name]).fetchall()]
    # hash(c1, c2, ...) equals hash(t), the row as a struct, at about half the cost.
    summary = "hash(source_file, source_sha256)" if schema == "raw" and {
        "source_file", "source_sha256"} <= set(columns) else "hash({})".format(
        ", ".join('"' + c.replace('"', '""') + '"' for c in columns))
    count, content = conn.execute(f"SELECT count(*), sum({summary}) FROM {table} AS t").fetchall()[0]
    version = f"rows:{count}:{content}"
    if run is not None and table in run["assets"]:
        run["versions"][table] = version
    return version


_TABLE_REFERENCE = re.compile(r"\b((?:raw|staging|marts|ledger)\.[a-z_][a-z0-9_]*)\b")
# A comment, or a string literal (quotes doubled inside), whichever starts first.
_COMMENT_OR_STRING = re.compile(r"--[^\n]*|'(?:[^']|'')*'")


def _read_names(match: re.Match) -> str:
    # A literal that is one table's name is read (`latest_capture('staging.x', $as_of)`); a
    # name inside longer text (a finding's recommendation) is not: it would make the build's
    # fingerprint depend on whether that table was built earlier in the run.
    text = match.group(0)
    return text if text.startswith("'") and _TABLE_REFERENCE.fullmatch(text[1:-1]) else " "


def sql_inputs(sql_names: Iterable[str], exclude: Iterable[str] = ()) -> list[str]:
    """The warehouse tables the SQL files read: named outside comments and outside text (a
    string literal that is a table's name, as `latest_capture('staging.x', $as_of)` takes, is
    read), but for `exclude` (what the same step builds: its own previous version is not an
    input)."""
    found = set()
    for name in sql_names:
        found |= set(_TABLE_REFERENCE.findall(_COMMENT_OR_STRING.sub(_read_names, read_sql(name))))
    return sorted(found - set(exclude))


def fingerprint(conn: duckdb.DuckDBPyConnection, tables: Iterable[str], sql_names: Iterable[str] = (),
                *values: object, run: dict | None = None) -> str:
    """md5 of the SQL files' text (and of the macros they may call), the values (bound
    parameters, settings) and the tables' versions."""
    parts = [SQL_MACROS, *(f"sql/{name}.sql:{read_sql(name)}" for name in sql_names)]
    parts += [repr(v) for v in values]
    parts += [f"{t}:{table_version(conn, t, run)}" for t in sorted(set(tables))]
    return hashlib.md5("\n".join(parts).encode()).hexdigest()


def check(conn: duckdb.DuckDBPyConnection, targets: Iterable[str], fingerprint_: str) -> Build:
    """Whether every one of `targets` exists and was last built with this fingerprint."""
    targets = tuple(targets)
    conn.execute(FINGERPRINTS_DDL)
    rows = conn.execute(
        f"SELECT target, fingerprint, dagster_run_id FROM {FINGERPRINTS} WHERE target IN (SELECT unnest($t))",
        {"t": list(targets)},
    ).fetchall()
    recorded = {target: (fp, run) for target, fp, run in rows}
    same = all(recorded.get(t, (None,))[0] == fingerprint_ and table_exists(conn, t) for t in targets)
    return Build(targets, fingerprint_, recorded[targets[0]][1] if same else None)


def record(conn: duckdb.DuckDBPyConnection, build: Build, run_id: str) -> None:
    """After a rebuild (in its transaction): the fingerprint it was built with."""
    conn.execute(FINGERPRINTS_DDL)
    conn.execute(f"DELETE FROM {FINGERPRINTS} WHERE target IN (SELECT unnest($t))", {"t": list(build.targets)})
    conn.execute(f"INSERT INTO {FINGERPRINTS} SELECT unnest($t), $fp, $run, $at",
                 {"t": list(build.targets), "fp": build.fingerprint, "run": run_id, "at": datetime.now(UTC)})
    conn.execute(f"COMMENT ON TABLE {FINGERPRINTS} IS {sql_literal(FINGERPRINTS_COMMENT)}")


def forget(conn: duckdb.DuckDBPyConnection, targets: Iterable[str]) -> None:
    """A table rebuilt outside this mechanism: its next build here rebuilds."""
    if table_exists(conn, FINGERPRINTS):
        conn.execute(f"DELETE FROM {FINGERPRINTS} WHERE target IN (SELECT unnest($t))", {"t": list(targets)})


def prepare(conn: duckdb.DuckDBPyConnection, context: dg.AssetExecutionContext, targets: Iterable[str],
            sql_names: Iterable[str], *values: object) -> Build:
    """The build of `targets` from `sql_names` and `values` (bound parameters, settings, policy):
    unchanged since an earlier run, or to rebuild now. A rebuild is recorded at once, in the
    caller's transaction: if the build then fails, the record rolls back with it."""
    targets, sql_names = tuple(targets), tuple(sql_names)
    inputs = sql_inputs(sql_names, exclude=targets)
    build = check(conn, targets, fingerprint(conn, inputs, sql_names, *values, run=_versions_of_run(context)))
    if build.unchanged:
        context.log.info(f"{', '.join(targets)}: inputs unchanged since run {build.since_run}, not rebuilt")
    else:
        record(conn, build, context.run.run_id)
    return build
