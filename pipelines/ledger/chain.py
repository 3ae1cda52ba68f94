"""The ledger's tables and chains: columns, DDL, comments, and `verify_ledger`."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

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
    from pipelines.warehouse import sql_literal

    # Only the comments that differ are written (each step that appends calls this; most runs
    # find them all in place).
    tables = dict(conn.execute(
        "SELECT table_name, coalesce(comment, '') FROM duckdb_tables() WHERE schema_name = 'ledger'").fetchall())
    current = {(t, c): text for t, c, text in conn.execute(
        "SELECT table_name, column_name, coalesce(comment, '') FROM duckdb_columns() "
        "WHERE schema_name = 'ledger'").fetchall()}
    for table, text in _LEDGER_TABLE_COMMENTS.items():
        if table in tables and tables[table] != text:
            conn.execute(f"COMMENT ON TABLE ledger.{table} IS {sql_literal(text)}")
    columns = {**{r: _LEDGER_COLUMN_COMMENTS for r in LEDGER_REGISTERS}, **_OTHER_COLUMN_COMMENTS}
    for table, comments in columns.items():
        if table not in tables:
            continue
        for column, text in comments.items():
            if current.get((table, column), text) != text:
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
