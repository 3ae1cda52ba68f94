"""Incremental builds of the tables that grow with time: which days a build recomputes, and why.

Every such table (the observations, the patch history, the episodes, the trend) records in
`staging.increment_state` the basis of its last build (a fingerprint of its SQL, settings and of
everything else it reads that is not time-partitioned) and its evaluation date, and appends to
`staging.increment_log` the first day it recomputed. A downstream table recomputes from the
earliest day its upstream tables recomputed since its own last build (and from the day after its
previous evaluation date when that date moves on); a new basis, an upstream full rebuild or an
evaluation date moved back rebuild it in full. The reason goes into the run's metadata.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta

import duckdb

from pipelines.warehouse import create_macros, read_sql, table_exists

STATE_DDL = (
    "CREATE TABLE IF NOT EXISTS staging.increment_state "
    "(target VARCHAR, basis VARCHAR, as_of DATE, consumed_seq BIGINT)"
)
LOG_DDL = "CREATE TABLE IF NOT EXISTS staging.increment_log (target VARCHAR, seq BIGINT, from_day DATE)"


@dataclass(frozen=True)
class Plan:
    """What one build recomputes: the days from `from_day` on, or everything when it is None."""

    target: str
    from_day: date | None
    reason: str
    basis: str
    consumed_seq: int
    late: bool = False  # it recomputes days before the previous evaluation date
    idle: bool = False  # nothing to recompute: `from_day` is past the last day it holds

    @property
    def full(self) -> bool:
        return self.from_day is None

    def metadata(self, prefix: str = "increment") -> dict:
        # An idle build's from_day (the day after its date, or date.max) is no day it recomputed.
        recomputed = "all days" if self.full else "no day" if self.idle else self.from_day.isoformat()
        return {f"{prefix}/recomputed_from": recomputed,
                f"{prefix}/reason": self.reason}

    def describe(self) -> str:
        days = "every day" if self.full else "no day" if self.idle else f"days from {self.from_day}"
        return f"{self.target}: {days} ({self.reason})"


def fingerprint(conn: duckdb.DuckDBPyConnection, tables: Iterable[str], *texts: object) -> str:
    """md5 of the texts (SQL, settings) and of the full content of `tables` (small tables that
    are not time-partitioned: any change to them changes every day)."""
    parts = [str(t) for t in texts]
    for table in tables:  # a table name, or a query for the columns that count
        query = table if table.lstrip().upper().startswith("SELECT") else f"SELECT * FROM {table}"
        if query is not table and not table_exists(conn, table):
            parts.append(f"{table}:absent")
            continue
        count, content = conn.execute(f"SELECT count(*), sum(hash(t)) FROM ({query}) AS t").fetchall()[0]
        parts.append(f"{table}:{count}:{content}")
    return hashlib.md5("\n".join(parts).encode()).hexdigest()


def plan(
    conn: duckdb.DuckDBPyConnection,
    target: str,
    basis: str,
    as_of: date | None = None,
    upstream: Iterable[str] = (),
    changed_from: date | None = None,
    changed: bool = False,
    basis_reason: str = "its SQL or what it reads besides the observations changed",
    requested: tuple[date | None, bool] = (None, False),
) -> Plan:
    """The days `target` must recompute. `changed_from` (with `changed`) is the earliest day its
    own inputs changed, for a table whose changes are not in the log (the observations).
    `requested` is what the run's partitions ask for (pipelines/partitions.py): recompute from
    that day at the latest, or (True) every day."""
    conn.execute(STATE_DDL)
    conn.execute(LOG_DDL)
    seq = conn.execute("SELECT coalesce(max(seq), 0) FROM staging.increment_log").fetchall()[0][0]
    previous = conn.execute(
        "SELECT basis, as_of, consumed_seq FROM staging.increment_state WHERE target = ?", [target]
    ).fetchall()

    def full(reason: str) -> Plan:
        return Plan(target, None, reason, basis, seq)

    if not table_exists(conn, target) or not previous:
        return full("first build")
    old_basis, old_as_of, consumed = previous[0]
    if old_basis != basis:
        return full(basis_reason)
    rerun_from, every_partition = requested
    if every_partition:
        return full("every partition was requested")
    if rerun_from is not None and old_as_of is not None and rerun_from > old_as_of:
        rerun_from = None  # days after the last build: recomputed anyway when they have data
    if as_of is not None and old_as_of is not None and as_of < old_as_of:
        return full("evaluation date moved back")
    names = list(upstream)
    if names:
        rebuilt, earliest, newer = conn.execute(
            "SELECT bool_or(from_day IS NULL), min(from_day), count(*) FROM staging.increment_log "
            "WHERE target IN (SELECT unnest($names)) AND seq > $consumed",
            {"names": names, "consumed": consumed},
        ).fetchall()[0]
        if rebuilt:
            return full("an upstream table was rebuilt in full")
        # An upstream build that changed no day up to this date logs a later one (the day after
        # its date, or date.max): nothing to recompute for it.
        if newer and earliest < (as_of + timedelta(days=1) if as_of else date.max):
            changed = True
            changed_from = earliest if changed_from is None else min(changed_from, earliest)
    candidates = [d for d in (changed_from, rerun_from) if d is not None]
    if as_of is not None and old_as_of is not None and as_of > old_as_of:
        candidates.append(old_as_of + timedelta(days=1))
    if not candidates:
        return Plan(target, as_of + timedelta(days=1) if as_of else date.max,
                    "changes give no rows" if changed else "nothing new", basis, seq, idle=True)
    from_day = min(candidates)
    late = old_as_of is not None and from_day <= old_as_of
    reason = "new or changed data for earlier days" if late else "new days"
    if late and from_day == rerun_from and (changed_from is None or rerun_from < changed_from):
        reason = f"the partitions from {rerun_from} were requested again"
    return Plan(target, from_day, reason, basis, seq, late)


def record(conn: duckdb.DuckDBPyConnection, built: Plan, as_of: date | None = None) -> None:
    """After a successful build (in the same transaction): its basis, date (the evaluation
    date, or for a table without one its last day) and log entry."""
    conn.execute(STATE_DDL)
    conn.execute(LOG_DDL)
    conn.execute("DELETE FROM staging.increment_state WHERE target = ?", [built.target])
    conn.execute("INSERT INTO staging.increment_state VALUES (?, ?, ?, ?)",
                 [built.target, built.basis, as_of, built.consumed_seq])
    conn.execute(
        "INSERT INTO staging.increment_log SELECT ?, coalesce(max(seq), 0) + 1, ? FROM staging.increment_log",
        [built.target, built.from_day],
    )


SNAPSHOT_DDL = ("CREATE TABLE IF NOT EXISTS staging.increment_snapshots "
                "(target VARCHAR, name VARCHAR, key VARCHAR, content UBIGINT)")


def changed_keys(conn: duckdb.DuckDBPyConnection, target: str, name: str, query: str,
                 include_new: bool = True) -> list[str]:
    """The keys whose content changed (new, changed or gone; without the new ones when
    `include_new` is false) since `target`'s last build, for the inputs an incremental build can
    follow key by key (a machine's attributes, a patch's facts). `query` gives (key, content);
    its result is saved for the next build."""
    conn.execute(SNAPSHOT_DDL)
    conn.execute(f"CREATE OR REPLACE TEMP TABLE snapshot_now AS SELECT key::VARCHAR AS key, content FROM ({query})")
    saved = "SELECT key, content FROM staging.increment_snapshots WHERE target = $target AND name = $name"
    changed = conn.execute(
        f"SELECT coalesce(list(DISTINCT key ORDER BY key), []) FROM ("
        f"(SELECT key, content FROM snapshot_now WHERE $new OR key IN (SELECT key FROM ({saved})) "
        f"EXCEPT {saved}) UNION ALL "
        f"({saved} EXCEPT SELECT key, content FROM snapshot_now))",
        {"target": target, "name": name, "new": include_new}).fetchall()[0][0]
    conn.execute("DELETE FROM staging.increment_snapshots WHERE target = ? AND name = ?", [target, name])
    conn.execute("INSERT INTO staging.increment_snapshots SELECT ?, ?, key, content FROM snapshot_now",
                 [target, name])
    return changed


def kept_rows(conn: duckdb.DuckDBPyConnection, view: str, table: str, columns: dict[str, str],
              time_column: str, from_day: date | None) -> None:
    """The temporary view `view`: the rows of `table` an incremental build keeps (before
    `from_day`), which its SQL continues from; empty, with the same columns, for a full build."""
    if from_day is None:
        typed = ", ".join(f"NULL::{kind} AS {name}" for name, kind in columns.items())
        conn.execute(f"CREATE OR REPLACE TEMP VIEW {view} AS SELECT {typed} WHERE false")
    else:
        conn.execute(f"CREATE OR REPLACE TEMP VIEW {view} AS SELECT {', '.join(columns)} FROM {table} "
                     f"WHERE {time_column} < timezone('UTC', DATE '{from_day.isoformat()}'::TIMESTAMP)")


def replace_days(conn: duckdb.DuckDBPyConnection, table: str, sql_name: str, time_column: str,
                 from_day: date, params: dict) -> None:
    """Replace the rows of `table` from `from_day` on with `sql/<sql_name>.sql`'s (which gives
    only those days)."""
    create_macros(conn)
    conn.execute(f"DELETE FROM {table} WHERE {time_column} >= timezone('UTC', CAST($day AS DATE)::TIMESTAMP)",
                 {"day": from_day})
    conn.execute(f"INSERT INTO {table} {read_sql(sql_name)}", params)
