"""The tamper-evident ledger of the authorization registers.

`ledger.authorization_events`, `ledger.patch_tests` and `ledger.exceptions` are append-only: a
register row gets one ledger row the first time it is seen, holding its canonical content (a JSON
object of the row exactly as received, keys sorted), `row_sha256 = sha256(content)`,
`prev_sha256` (the previous row's chain hash, 64 zeros for the first) and
`chain_sha256 = sha256(prev_sha256 || row_sha256)` (hex strings concatenated).
Ledger rows are never updated or deleted. Each append also records the chain head in
`ledger.chain_heads`, so that removing the newest ledger rows is detected too.

A later run that finds a row changed (same id, other content), removed, reordered, or a new row
inserted before rows already recorded, records it in `ledger.tamper_findings` (with each field's
recorded and new value) and keeps the original row. The registers' staging tables are then
rebuilt from the first-recorded rows (`rebuild_first_recorded`), so the controls are judged on
what was first recorded and an edit cannot hide a finding.

The chains are also kept as append-only files (`<ledger dir>/<register>.jsonl`, one JSON line per
row) outside the warehouse: `sync_ledger_files` restores a lost warehouse's ledger from them and
`append_ledger_file` writes the rows they lack.

`verify_ledger(conn)` recomputes every chain and returns the problems (`patchledger verify`).
Recomputing every hash in the warehouse defeats the chain; the chain heads copied into each
evidence manifest are the external anchor against that.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pandas as pd

# register name -> id column; the registers that are evidence of approvals and tests.
LEDGER_REGISTERS = {
    "authorization_events": "event_id",
    "patch_tests": "test_id",
    "exceptions": "exception_id",
}
GENESIS = "0" * 64

_LEDGER_COLUMNS = {
    "seq": "BIGINT",
    "row_id": "VARCHAR",
    "register_row": "INTEGER",
    "content": "VARCHAR",
    "row_sha256": "VARCHAR",
    "prev_sha256": "VARCHAR",
    "chain_sha256": "VARCHAR",
    "first_seen_run": "VARCHAR",
    "source_sha256": "VARCHAR",
    "arrived_at": "TIMESTAMPTZ",
}
# Columns a ledger file written before them may lack (read as NULL).
_OPTIONAL_COLUMNS = {"arrived_at"}

_HEADS_DDL = """
CREATE TABLE IF NOT EXISTS ledger.chain_heads (
    register VARCHAR NOT NULL,
    head_seq BIGINT NOT NULL,
    head_chain_sha256 VARCHAR NOT NULL,
    run_id VARCHAR NOT NULL
)
"""
_TAMPER_DDL = """
CREATE TABLE IF NOT EXISTS ledger.tamper_findings (
    finding_id VARCHAR NOT NULL,
    register VARCHAR NOT NULL,
    row_id VARCHAR NOT NULL,
    kind VARCHAR NOT NULL,
    first_detected_run VARCHAR NOT NULL,
    ledger_seq BIGINT,
    ledger_row_sha256 VARCHAR,
    observed_row_sha256 VARCHAR,
    details VARCHAR
)
"""

# The register's rows as canonical JSON (keys sorted, values as received), in one static query.
_CURRENT = """
SELECT row_id, register_row, content, sha256(content) AS row_sha256 FROM (
WITH cells AS (
    UNPIVOT _register_current
    ON COLUMNS(* EXCLUDE (_row, source_file, source_sha256, ingest_run))
    INTO NAME field VALUE value
)
SELECT
    max(value) FILTER (WHERE field = $id_column) AS row_id,
    CAST(_row AS INTEGER) AS register_row,
    '{' || string_agg(to_json(field) || ':' || to_json(value), ',' ORDER BY field) || '}'
        AS content
FROM cells
GROUP BY _row
)
ORDER BY register_row
"""

# Compare the register as it is now with what the ledger first saw. Reordering is judged on the
# rows present in both: a row whose rank by register position differs from its rank by seq (a
# row flagged as inserted is left out: it entered the chain last but sits where it was put). A
# new row placed before a row already recorded was inserted between them (a backdated record).
_TAMPER = """
WITH known AS (SELECT seq, row_id, row_sha256, register_row, content FROM _ledger_rows),
inserted_before AS (
    SELECT row_id FROM ledger.tamper_findings WHERE register = $register AND kind = 'inserted'
),
both_sides AS (
    SELECT k.row_id, k.seq, k.row_sha256 AS ledger_sha, k.register_row AS ledger_row,
           c.row_sha256 AS observed_sha, c.register_row AS observed_row,
           k.content AS recorded_content, c.content AS observed_content
    FROM known AS k JOIN _register_now AS c USING (row_id)
),
ranked AS (
    SELECT *, row_number() OVER (ORDER BY seq) AS rank_by_seq,
           row_number() OVER (ORDER BY observed_row) AS rank_by_position
    FROM both_sides WHERE row_id NOT IN (SELECT row_id FROM inserted_before)
),
found AS (
    SELECT row_id, 'changed' AS kind, seq, ledger_sha, observed_sha, recorded_content,
           observed_content,
           json_object('ledger_register_row', ledger_row, 'observed_register_row', observed_row)
               AS details
    FROM both_sides WHERE ledger_sha <> observed_sha
    UNION ALL
    SELECT row_id, 'reordered', seq, ledger_sha, observed_sha, NULL, NULL,
           json_object('rank_when_first_seen', rank_by_seq, 'rank_now', rank_by_position,
                       'ledger_register_row', ledger_row, 'observed_register_row', observed_row)
    FROM ranked WHERE rank_by_seq <> rank_by_position
    UNION ALL
    SELECT k.row_id, 'removed', k.seq, k.row_sha256, NULL, k.content, NULL,
           json_object('ledger_register_row', k.register_row)
    FROM known AS k ANTI JOIN _register_now AS c USING (row_id)
    UNION ALL
    SELECT c.row_id, 'inserted', NULL, NULL, c.row_sha256, NULL, c.content,
           json_object('observed_register_row', c.register_row)
    FROM _register_now AS c ANTI JOIN known AS k USING (row_id)
    WHERE c.register_row < (SELECT max(observed_row) FROM both_sides)
)
SELECT sha256(concat_ws('|', $register, row_id, kind, coalesce(observed_sha, ''))) AS finding_id,
       $register AS register, row_id, kind, $run_id AS first_detected_run, seq AS ledger_seq,
       ledger_sha AS ledger_row_sha256, observed_sha AS observed_row_sha256,
       CAST(details AS VARCHAR) AS details, recorded_content, observed_content
FROM found
WHERE finding_id NOT IN (SELECT finding_id FROM ledger.tamper_findings)
ORDER BY ledger_seq NULLS LAST, kind, row_id
"""


def _changes(kind: str, details: str, recorded: str | None, observed: str | None) -> str:
    """The finding's details with what changed: each field with its recorded and new value."""
    detail = json.loads(details)
    if kind == "changed":
        before, after = json.loads(recorded), json.loads(observed)
        fields = sorted(set(before) | set(after))
        changes = [{"field": f, "recorded": before.get(f), "new": after.get(f)}
                   for f in fields if before.get(f) != after.get(f)]
    elif kind == "reordered":
        changes = [{"field": "register_row", "recorded": detail["ledger_register_row"],
                    "new": detail["observed_register_row"]}]
    elif kind == "removed":
        changes = [{"field": "(row)", "recorded": recorded, "new": None}]
    else:  # inserted
        changes = [{"field": "(row)", "recorded": None, "new": observed}]
    return json.dumps({**detail, "changes": changes}, sort_keys=True)


_VERIFY_ROWS = """
SELECT seq, row_id,
       sha256(content) <> row_sha256 AS bad_row_hash,
       prev_sha256 <> coalesce(lag(chain_sha256) OVER (ORDER BY seq, row_sha256), $genesis)
           AS bad_link,
       sha256(prev_sha256 || row_sha256) <> chain_sha256 AS bad_chain,
       seq <> row_number() OVER (ORDER BY seq, row_sha256) AS bad_seq
FROM _ledger_rows
QUALIFY bad_row_hash OR bad_link OR bad_chain OR bad_seq
ORDER BY seq
"""

_VERIFY_HEADS = """
SELECT h.head_seq, h.head_chain_sha256, l.chain_sha256, h.run_id
FROM ledger.chain_heads AS h LEFT JOIN _ledger_rows AS l ON l.seq = h.head_seq
WHERE h.register = $register AND (l.seq IS NULL OR l.chain_sha256 <> h.head_chain_sha256)
ORDER BY h.head_seq, h.run_id
"""


@dataclass(frozen=True)
class LedgerProblem:
    register: str
    seq: int | None
    kind: str
    detail: str

    def __str__(self) -> str:
        at = f" seq {self.seq}" if self.seq is not None else ""
        return f"ledger.{self.register}{at}: {self.kind}: {self.detail}"


@dataclass
class AppendResult:
    register: str
    appended: int
    tamper_findings: int
    head_seq: int


def _exists(conn: duckdb.DuckDBPyConnection, table: str) -> bool:
    # fetchall, not fetchone: DuckDB 2.0 refuses register()/from_df() while a result is unread.
    schema, name = table.split(".")
    return bool(
        conn.execute(
            "SELECT count(*) FROM information_schema.tables "
            "WHERE table_schema = ? AND table_name = ?",
            [schema, name],
        ).fetchall()[0][0]
    )


def chain_hash(prev_sha256: str, row_sha256: str) -> str:
    return hashlib.sha256((prev_sha256 + row_sha256).encode("ascii")).hexdigest()


def ensure_ledger(conn: duckdb.DuckDBPyConnection) -> None:
    for register in LEDGER_REGISTERS:
        if not _exists(conn, f"ledger.{register}"):
            empty = pd.DataFrame(
                {c: pd.Series([], dtype=_pandas_type(t)) for c, t in _LEDGER_COLUMNS.items()}
            )
            conn.from_df(empty).create(f"ledger.{register}")
        conn.execute(f"ALTER TABLE ledger.{register} ADD COLUMN IF NOT EXISTS arrived_at TIMESTAMPTZ")
    conn.execute(_HEADS_DDL)
    conn.execute(_TAMPER_DDL)
    comment_ledger(conn)


# Table and column comments of the ledger (they appear in docs/warehouse.md and the UI).
_LEDGER_TABLE_COMMENTS = {
    "authorization_events": "Append-only, hash-chained copy of registers/authorization_events.csv: one row per register row when first seen, never updated or deleted.",
    "patch_tests": "Append-only, hash-chained copy of registers/patch_tests.csv: one row per register row when first seen, never updated or deleted.",
    "exceptions": "Append-only, hash-chained copy of registers/exceptions.csv: one row per register row when first seen, never updated or deleted.",
    "chain_heads": "The head of each ledger chain after every append (register, seq, chain hash, run), so that removing the newest rows is detected; evidence packs anchor the latest heads in their manifest.",
    "tamper_findings": "Rows of a register found changed, removed, reordered or inserted between recorded rows after they entered the ledger; the original stays in the ledger.",
}
_LEDGER_COLUMN_COMMENTS = {
    "seq": "Position in the chain, from 1.",
    "row_id": "The register row's id (event_id, test_id or exception_id).",
    "register_row": "Row of the register file when first seen (1 = first data row).",
    "content": "The register row as received, as canonical JSON (keys sorted).",
    "row_sha256": "sha256 of content.",
    "prev_sha256": "chain_sha256 of the previous row (64 zeros for the first).",
    "chain_sha256": "sha256(prev_sha256 || row_sha256): changing any earlier row breaks every later hash.",
    "first_seen_run": "Dagster run that first saw the row.",
    "source_sha256": "sha256 of the register file it came from.",
    "arrived_at": "When the row arrived: the landing time (modification time, UTC) of the register file it was first recorded from; NULL for rows recorded before arrival times were kept. A pack as known then counts only rows arrived by its date.",
}


_OTHER_COLUMN_COMMENTS = {
    "chain_heads": {
        "register": "The ledger table (authorization_events, patch_tests or exceptions).",
        "head_seq": "seq of the newest row after the append.",
        "head_chain_sha256": "chain_sha256 of that row.",
        "run_id": "Dagster run of the append.",
    },
    "tamper_findings": {
        "finding_id": "Stable id: sha256 of register, row id, kind and the hashes involved.",
        "register": "The register the row belongs to.",
        "row_id": "The register row's id.",
        "kind": "changed (same id, other content), removed (no longer in the register), reordered, or inserted (a new row placed before rows already recorded).",
        "first_detected_run": "Dagster run that first detected it.",
        "ledger_seq": "seq of the original row in the ledger.",
        "ledger_row_sha256": "sha256 of the original content (kept in the ledger).",
        "observed_row_sha256": "sha256 of what the register holds now (NULL when removed).",
        "details": "JSON: the register rows involved and `changes`, a list of {field, recorded, new}: each field with the value first recorded and the value now (field (row) for a removed or inserted row, register_row for a reorder).",
    },
    "notifications_sent": {
        "seq": "Position in the chain, from 1.",
        "notification_id": "Stable id of the notice.",
        "patch_key": "The patch notified.",
        "kb": "KB digits where the patch has one.",
        "title": "Patch title.",
        "sources": "Channels that named the patch (msrc, osv).",
        "severity": "Highest severity.",
        "max_cvss": "Highest CVSS base score.",
        "exploited": "MSRC reports a CVE of it exploited.",
        "in_kev": "A CVE of it is in the CISA KEV catalog.",
        "kev_due_date": "Earliest KEV due date of its CVEs.",
        "max_epss": "Highest EPSS probability of its CVEs.",
        "cves": "CVEs the patch fixes.",
        "products": "Products it applies to.",
        "affected_machines": "Machines it applied to when notified.",
        "released_at": "Vendor release date.",
        "as_of": "Evaluation date of the run that notified it.",
        "notified_at": "When it was notified (UTC, wall clock of the run).",
        "run_id": "Dagster run that notified it.",
        "delivery": "webhook (POSTed to PATCHLEDGER_NOTIFY_WEBHOOK) or warehouse (recorded only).",
        "content": "The notice as canonical JSON (keys sorted).",
        "row_sha256": "sha256 of content.",
        "prev_sha256": "chain_sha256 of the previous row (64 zeros for the first).",
        "chain_sha256": "sha256(prev_sha256 || row_sha256).",
    },
}


def comment_ledger(conn: duckdb.DuckDBPyConnection) -> None:
    """Comment every ledger table that exists (the comments feed docs/warehouse.md and the UI)."""
    from pipelines.warehouse import sql_literal, table_exists

    for table, text in _LEDGER_TABLE_COMMENTS.items():
        if table_exists(conn, f"ledger.{table}"):
            conn.execute(f"COMMENT ON TABLE ledger.{table} IS {sql_literal(text)}")
    columns = {**{r: _LEDGER_COLUMN_COMMENTS for r in LEDGER_REGISTERS}, **_OTHER_COLUMN_COMMENTS}
    for table, comments in columns.items():
        if not table_exists(conn, f"ledger.{table}"):
            continue
        for column, text in comments.items():
            conn.execute(f"COMMENT ON COLUMN ledger.{table}.{column} IS {sql_literal(text)}")


def _pandas_type(sql_type: str) -> str:
    return {"BIGINT": "int64", "INTEGER": "int32", "TIMESTAMPTZ": "datetime64[ns, UTC]"}.get(sql_type, "str")


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    """The ledger's columns with their types (times as UTC timestamps, ISO text from the files)."""
    frame = frame.copy()
    frame["arrived_at"] = pd.to_datetime(frame["arrived_at"], utc=True)
    return frame.astype({c: _pandas_type(t) for c, t in _LEDGER_COLUMNS.items() if t != "TIMESTAMPTZ"})


def _view(conn: duckdb.DuckDBPyConnection, table: str, view: str) -> None:
    # A temporary view lives in the connection's temp catalog, so verification works on a
    # read-only connection too. Both names come from this module's constants, never from input.
    if not re.fullmatch(r"(ledger|raw)\.[a-z_]+", table) or not re.fullmatch(r"_[a-z_]+", view):
        raise ValueError(f"unexpected ledger table or view name: {table!r}, {view!r}")
    conn.execute(f"CREATE OR REPLACE TEMP VIEW {view} AS SELECT * FROM {table}")


def append_register(conn: duckdb.DuckDBPyConnection, register: str, run_id: str,
                    arrived_at: datetime | None = None) -> AppendResult:
    """Record tampering, then append the register's new rows to its chain.

    Reads `raw.register_<register>` (rows exactly as received); `arrived_at` is the register
    file's landing time, recorded on the rows it adds. Call inside `transaction(conn)`.
    """
    id_column = LEDGER_REGISTERS[register]
    ensure_ledger(conn)
    _view(conn, f"raw.register_{register}", "_register_current")
    _view(conn, f"ledger.{register}", "_ledger_rows")
    now = conn.execute(_CURRENT, {"id_column": id_column}).df()
    conn.register("_register_now", now)
    try:
        findings = conn.execute(_TAMPER, {"register": register, "run_id": run_id}).df()
        if len(findings):
            findings["details"] = [
                _changes(r.kind, r.details, r.recorded_content, r.observed_content)
                for r in findings.itertuples(index=False)
            ]
            findings = findings.drop(columns=["recorded_content", "observed_content"])
            conn.from_df(findings).insert_into("ledger.tamper_findings")
        known = conn.execute("SELECT row_id FROM _ledger_rows").fetchall()
        head_seq, head_chain = conn.execute(
            "SELECT coalesce(max(seq), 0), coalesce(arg_max(chain_sha256, seq), $genesis) "
            "FROM _ledger_rows",
            {"genesis": GENESIS},
        ).fetchall()[0]
    finally:
        conn.unregister("_register_now")
    seen = {r[0] for r in known}
    new = now[~now["row_id"].isin(seen)].sort_values("register_row")
    source_sha = conn.execute("SELECT any_value(source_sha256) FROM _register_current").fetchall()[
        0
    ][0]
    rows = []
    prev = head_chain
    for offset, row in enumerate(new.itertuples(index=False), start=1):
        chain = chain_hash(prev, row.row_sha256)
        rows.append(
            (
                head_seq + offset,
                row.row_id,
                row.register_row,
                row.content,
                row.row_sha256,
                prev,
                chain,
                run_id,
                source_sha,
                arrived_at,
            )
        )
        prev = chain
    if rows:
        frame = _typed(pd.DataFrame(rows, columns=list(_LEDGER_COLUMNS)))
        conn.from_df(frame).insert_into(f"ledger.{register}")
        conn.execute(
            "INSERT INTO ledger.chain_heads VALUES ($register, $seq, $chain, $run_id)",
            {"register": register, "seq": head_seq + len(rows), "chain": prev, "run_id": run_id},
        )
    conn.execute("DROP VIEW IF EXISTS _register_current")
    conn.execute("DROP VIEW IF EXISTS _ledger_rows")
    return AppendResult(register, len(rows), len(findings), head_seq + len(rows))


def verify_ledger(conn: duckdb.DuckDBPyConnection) -> list[LedgerProblem]:
    """Recompute every chain of the ledger; an empty list means it verifies."""
    problems: list[LedgerProblem] = []
    heads_exist = _exists(conn, "ledger.chain_heads")
    for register in LEDGER_REGISTERS:
        if not _exists(conn, f"ledger.{register}"):
            if (
                heads_exist
                and conn.execute(
                    "SELECT count(*) FROM ledger.chain_heads WHERE register = ?", [register]
                ).fetchall()[0][0]
            ):
                problems.append(
                    LedgerProblem(register, None, "missing", "the ledger table is gone")
                )
            continue
        _view(conn, f"ledger.{register}", "_ledger_rows")
        for seq, row_id, bad_row, bad_link, bad_chain, bad_seq in conn.execute(
            _VERIFY_ROWS, {"genesis": GENESIS}
        ).fetchall():
            if bad_row:
                problems.append(
                    LedgerProblem(
                        register,
                        seq,
                        "content_altered",
                        f"row {row_id}: sha256(content) differs from row_sha256",
                    )
                )
            if bad_link:
                problems.append(
                    LedgerProblem(
                        register,
                        seq,
                        "broken_link",
                        f"row {row_id}: prev_sha256 is not the chain hash of the previous row "
                        "(a row was deleted, inserted or reordered)",
                    )
                )
            if bad_chain:
                problems.append(
                    LedgerProblem(
                        register,
                        seq,
                        "chain_hash_mismatch",
                        f"row {row_id}: chain_sha256 is not sha256(prev_sha256 || row_sha256)",
                    )
                )
            if bad_seq:
                problems.append(
                    LedgerProblem(
                        register,
                        seq,
                        "sequence_gap",
                        f"row {row_id}: seq is not contiguous (a row was deleted or duplicated)",
                    )
                )
        if heads_exist:
            for head_seq, expected, actual, run_id in conn.execute(
                _VERIFY_HEADS, {"register": register}
            ).fetchall():
                problems.append(
                    LedgerProblem(
                        register,
                        head_seq,
                        "head_mismatch",
                        f"run {run_id} recorded chain head {expected[:12]}... at seq {head_seq}, "
                        f"the ledger now has {actual[:12] + '...' if actual else 'no such row'}",
                    )
                )
        conn.execute("DROP VIEW IF EXISTS _ledger_rows")
    return problems


def rebuild_first_recorded(conn: duckdb.DuckDBPyConnection, register: str,
                           known_by: datetime | None = None) -> int:
    """Rebuild `staging.<register>` from the first-recorded version of every row in the ledger.

    Controls are judged on what was first recorded: an edited row counts as it was, a removed row
    still counts, a new row counts from when it entered the chain. The register's own SQL
    (sql/register_<register>.sql) normalizes the ledger's rows exactly as it does the file's.
    With `known_by` (a pack as known then), only the rows that had arrived before it count.
    Call after `append_register`, inside the same transaction.
    """
    from pipelines.sources.registers import REGISTERS
    from pipelines.warehouse import comment_table, create_macros, read_sql, row_count

    columns = REGISTERS[register].column_names
    recorded = conn.execute(  # name from LEDGER_REGISTERS; rows of unknown arrival predate the times
        f"SELECT register_row, content FROM ledger.{register} "
        "WHERE $known_by IS NULL OR arrived_at IS NULL OR arrived_at < $known_by ORDER BY seq",
        {"known_by": known_by},
    ).fetchall()
    rows = []
    for register_row, content in recorded:
        values = json.loads(content)
        rows.append([register_row, *(values.get(c, "") for c in columns)])
    frame = pd.DataFrame(rows, columns=["_row", *columns]).astype({c: "str" for c in columns})
    frame["_row"] = frame["_row"].astype("int64")
    frame["source_file"] = REGISTERS[register].file
    sql_name = f"register_{register}"
    # The same SELECT over the ledger's rows instead of the file's (a table name cannot be bound).
    query = read_sql(sql_name).replace(f"FROM raw.{sql_name}", "FROM _first_recorded")
    create_macros(conn)
    conn.register("_first_recorded", frame)
    try:
        conn.execute(f"CREATE OR REPLACE TABLE staging.{register} AS {query}")
    finally:
        conn.unregister("_first_recorded")
    comment_table(conn, f"staging.{register}", sql_name)
    return row_count(conn, f"staging.{register}")


# The ledger as files: one JSON line per ledger row (every column), append-only, so that the
# first-recorded register rows outlive the warehouse. A warehouse without a ledger restores it
# from the files (chain verified first); a warehouse ahead of the files writes the missing lines.
def ledger_file(directory: Path, register: str) -> Path:
    return Path(directory) / f"{register}.jsonl"


class LedgerFileError(ValueError):
    """A ledger file that is not an extension of (or extended by) the warehouse's ledger."""


def _read_ledger_file(path: Path) -> list[dict]:
    rows = []
    if not path.exists():
        return rows
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                row = json.loads(line)
                missing = [c for c in _LEDGER_COLUMNS if c not in row and c not in _OPTIONAL_COLUMNS]
            except ValueError as exc:
                raise LedgerFileError(f"{path}: line {number}: not JSON ({exc})") from None
            if missing:
                raise LedgerFileError(f"{path}: line {number}: field {missing[0]} missing")
            rows.append({c: None for c in _OPTIONAL_COLUMNS} | row)
    return rows


def _check_file_chain(path: Path, rows: list[dict]) -> None:
    """The file's rows chain from the genesis: each hash recomputes and each link holds."""
    prev = GENESIS
    for number, row in enumerate(rows, start=1):
        for field, ok in (
            ("seq", row["seq"] == number),
            ("row_sha256", hashlib.sha256(row["content"].encode("utf-8")).hexdigest() == row["row_sha256"]),
            ("prev_sha256", row["prev_sha256"] == prev),
            ("chain_sha256", chain_hash(row["prev_sha256"], row["row_sha256"]) == row["chain_sha256"]),
        ):
            if not ok:
                raise LedgerFileError(
                    f"{path}: line {number}: field {field} does not verify (row {row['row_id']}): "
                    "the ledger file was altered"
                )
        prev = row["chain_sha256"]


def sync_ledger_files(conn: duckdb.DuckDBPyConnection, register: str, directory: Path,
                      run_id: str) -> int:
    """Make the warehouse's ledger and its file hold the same chain; returns rows restored.

    The longer of the two must extend the shorter row for row. Rows only in the file are
    restored into the warehouse (a lost or rebuilt warehouse); rows only in the warehouse are
    appended to the file. Anything else is an error naming the file, the line and the field.
    Call inside `transaction(conn)` before `append_register`.
    """
    ensure_ledger(conn)
    path = ledger_file(directory, register)
    in_file = _read_ledger_file(path)
    _check_file_chain(path, in_file)
    columns = list(_LEDGER_COLUMNS)
    in_warehouse = [
        dict(zip(columns, r, strict=True))
        for r in conn.execute(f"SELECT {', '.join(columns)} FROM ledger.{register} ORDER BY seq").fetchall()
    ]
    for number, (a, b) in enumerate(zip(in_file, in_warehouse, strict=False), start=1):
        for column in ("row_id", "content", "chain_sha256"):
            if a[column] != b[column]:
                raise LedgerFileError(
                    f"{path}: line {number}: field {column} differs from ledger.{register} seq "
                    f"{b['seq']}: the file and the warehouse hold different chains"
                )
    restored = in_file[len(in_warehouse):]
    if restored:
        conn.from_df(_typed(pd.DataFrame(restored, columns=columns))).insert_into(f"ledger.{register}")
        head = restored[-1]
        conn.execute(
            "INSERT INTO ledger.chain_heads VALUES ($register, $seq, $chain, $run_id)",
            {"register": register, "seq": head["seq"], "chain": head["chain_sha256"], "run_id": run_id},
        )
    return len(restored)


def append_ledger_file(conn: duckdb.DuckDBPyConnection, register: str, directory: Path) -> int:
    """Append to the file the warehouse's ledger rows it does not hold yet; returns lines written."""
    path = ledger_file(directory, register)
    held = len(_read_ledger_file(path))
    columns = list(_LEDGER_COLUMNS)
    rows = conn.execute(
        f"SELECT {', '.join(columns)} FROM ledger.{register} WHERE seq > ? ORDER BY seq", [held]
    ).fetchall()
    if rows:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as handle:
            for row in rows:
                line = dict(zip(columns, row, strict=True))
                if line["arrived_at"] is not None:
                    line["arrived_at"] = line["arrived_at"].astimezone(UTC).isoformat()
                handle.write(json.dumps(line, sort_keys=True) + "\n")
    return len(rows)
