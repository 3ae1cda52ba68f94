"""Appending the registers to their chains, recording tampering, and rebuilding the registers'
staging tables from the first-recorded rows."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import duckdb
import pandas as pd

from .chain import (
    _LEDGER_COLUMNS,
    GENESIS,
    LEDGER_REGISTERS,
    _typed,
    _view,
    chain_hash,
    ensure_ledger,
)

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


@dataclass
class AppendResult:
    register: str
    appended: int
    tamper_findings: int
    head_seq: int


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
