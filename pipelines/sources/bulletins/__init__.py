"""What the five bulletin channels (MSRC, KEV, EPSS, OSV, Vulnrichment) share.

Layout: each channel reads `<estate>/bulletins/<channel>/`; in live mode it first downloads what
is new into that folder (`pipelines/sources/<channel>/live.py`, through the shared client of
`pipelines/connectors/http.py`), then reads it exactly as offline.

Contracts kept here: the provenance columns every raw bulletin table ends with (source_file,
source_sha256, ingest_run), the "file already held" rule (same estate-relative name and sha256:
not parsed again) and `raw.bulletin_ingest_log`, one row per successful ingest, the source of
marts.bulletin_channels' "last successful ingest" (`assets.py` of this folder).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pyarrow as pa

from assets.common import OWNERS, STAGE3_BULLETINS, key
from pipelines.connectors.http import sha256_bytes
from pipelines.resources import RunSettings
from pipelines.warehouse import sql_literal, table_exists

PROVENANCE = [
    pa.field("source_file", pa.string()),
    pa.field("source_sha256", pa.string()),
    pa.field("ingest_run", pa.string()),
]
PROVENANCE_COLUMNS = [f.name for f in PROVENANCE]

INGEST_LOG_DDL = """
CREATE TABLE IF NOT EXISTS raw.bulletin_ingest_log (
    channel VARCHAR NOT NULL, ingest_run VARCHAR NOT NULL, ingested_at TIMESTAMPTZ NOT NULL,
    live_fetch BOOLEAN NOT NULL, files_seen INTEGER NOT NULL, files_skipped INTEGER NOT NULL,
    documents_ingested INTEGER NOT NULL
)
"""
_INGEST_LOG_COMMENT = (
    "One row per successful bulletin ingest (append-only): channel (msrc, msrc_index, kev, epss, "
    "osv, vulnrichment), Dagster run, end time (UTC), whether it fetched live, files seen, files skipped as "
    "already ingested (same sha256), and documents (months, snapshots, score days, advisories) "
    "ingested as new or changed."
)


def table_specs(descriptions: dict[str, str], kinds: set[str], deps: tuple[str, ...] = ()) -> list[dg.AssetSpec]:
    """The specs of a stage-3 multi-asset: one per table (key -> description), same kinds and deps."""
    return [
        dg.AssetSpec(key(table), description=description, group_name=STAGE3_BULLETINS, kinds=kinds,
                     owners=OWNERS, deps=[key(d) for d in deps])
        for table, description in descriptions.items()
    ]


def text_value(value: Any) -> str | None:
    """'x', {"Value": 'x'}, {} or None -> stripped text or None (a list: its first text)."""
    if isinstance(value, list):
        return next((t for t in (text_value(v) for v in value) if t), None)
    if isinstance(value, dict):
        value = value.get("Value")
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def utc_timestamp(value: Any) -> datetime | None:
    """ISO-8601 with or without a zone (no zone = UTC, as MSRC documents write it)."""
    text = text_value(value)
    if not text:
        return None
    text = re.sub(r"(\.\d{6})\d+", r"\1", text.replace("Z", "+00:00"))
    parsed = datetime.fromisoformat(text)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def first_problem(cursor: duckdb.DuckDBPyConnection, problems_sql: str, name: str) -> str | None:
    """The first bad cell that `problems_sql` lists as (row, field, value, reason), as a message
    naming the file, row and field (and how many more there are); None when there is none."""
    problems = cursor.execute(problems_sql).fetchall()
    if not problems:
        return None
    row, column, value, reason = problems[0]
    more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
    return f"{name}: row {row}, field {column}: {value!r}: {reason}{more}"


def channel_folder(run_settings: RunSettings, channel: str) -> Path:
    return Path(run_settings.estate_dir) / "bulletins" / channel


def channel_files(run_settings: RunSettings, channel: str, list_files) -> tuple[Path, list[Path]]:
    """The channel's folder and the files `list_files(folder)` finds there (none without a folder)."""
    folder = channel_folder(run_settings, channel)
    return folder, (list_files(folder) if folder.is_dir() else [])


def relative(path: Path, run_settings: RunSettings) -> str:
    """The estate-relative name of a file: no machine paths in the warehouse."""
    try:
        return path.resolve().relative_to(Path(run_settings.estate_dir).resolve()).as_posix()
    except ValueError:
        return path.name


def ensure_table(conn: duckdb.DuckDBPyConnection, table: str, schema: pa.Schema, description: str,
                 extra: list[pa.Field] = PROVENANCE) -> None:
    """Create a raw table from its Arrow schema plus `extra` columns when missing, and comment it
    (a channel never ingested is an empty table, so what reads it still runs)."""
    for field in extra:
        schema = schema.append(field)
    conn.register("_empty", pa.Table.from_pylist([], schema=schema))
    try:
        conn.execute(f"CREATE TABLE IF NOT EXISTS {table} AS SELECT * FROM _empty")
    finally:
        conn.unregister("_empty")
    conn.execute(f"COMMENT ON TABLE {table} IS {sql_literal(description)}")


def held_files(conn: duckdb.DuckDBPyConnection, table: str) -> set[tuple[str, str]]:
    """(source_file, source_sha256) of every file the table already holds rows of."""
    return set(conn.execute(f"SELECT DISTINCT source_file, source_sha256 FROM {table}").fetchall())


def known_revisions(conn: duckdb.DuckDBPyConnection, table: str, id_column: str, revision_column: str) -> dict:
    """id -> revision of every document the table holds (none before the table exists)."""
    if not table_exists(conn, table):
        return {}
    return dict(conn.execute(f"SELECT {id_column}, {revision_column} FROM {table}").fetchall())


def unread_files(
    conn: duckdb.DuckDBPyConnection, table: str, files: list[Path], run_settings: RunSettings, run_id: str
) -> tuple[list[tuple[Path, bytes, dict[str, str]]], int]:
    """The files `table` does not hold yet, each with its bytes and provenance columns, and how
    many were skipped as held (same estate-relative name and sha256)."""
    held = held_files(conn, table)
    unread, skipped = [], 0
    for path in files:
        data = path.read_bytes()
        provenance = {"source_file": relative(path, run_settings), "source_sha256": sha256_bytes(data),
                      "ingest_run": run_id}
        if (provenance["source_file"], provenance["source_sha256"]) in held:
            skipped += 1
        else:
            unread.append((path, data, provenance))
    return unread, skipped


def keep_newest(chosen: dict, known: dict, key: str, revision: Any, item: Any) -> bool:
    """Choose `item` for `key` unless a revision already chosen is newer. False (not chosen)
    when it is older than the ingested revision `known[key]`: an old copy never replaces rows."""
    seen = known.get(key)
    if seen is not None and revision < seen:
        return False
    previous = chosen.get(key)
    if previous is None or revision >= previous[0]:
        chosen[key] = (revision, item)
    return True


def replace_rows(conn: duckdb.DuckDBPyConnection, incoming: dict[str, pa.Table], id_column: str,
                 ids: list[str]) -> None:
    """Replace the rows of `ids` in each table by the incoming ones (a document replaces only
    its own rows)."""
    conn.register("_ids", pa.table({id_column: ids}))
    try:
        for table, rows in incoming.items():
            conn.execute(f"DELETE FROM {table} WHERE {id_column} IN (SELECT {id_column} FROM _ids)")
            conn.register("_incoming", rows)
            try:
                conn.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _incoming")
            finally:
                conn.unregister("_incoming")
    finally:
        conn.unregister("_ids")


def ingest_snapshots(context, conn: duckdb.DuckDBPyConnection, run_settings: RunSettings, channel: str,
                     table: str, snapshot_column: str, files: list[Path], read, live_fetch: bool = False) -> None:
    """Load dated snapshot files (KEV catalogs, EPSS days) into `table`: a file already held
    (same name and sha256) is skipped; a snapshot read again replaces itself."""
    unread, skipped = unread_files(conn, table, files, run_settings, context.run.run_id)
    for path, _, provenance in unread:
        snapshot = read(conn, path)
        conn.register("_snapshot", snapshot)
        try:
            conn.execute(
                f"DELETE FROM {table} WHERE {snapshot_column} IN "
                f"(SELECT DISTINCT {snapshot_column} FROM _snapshot)"
            )
            conn.execute(
                f"INSERT INTO {table} BY NAME "
                "SELECT *, $source_file AS source_file, $source_sha256 AS source_sha256, "
                "$ingest_run AS ingest_run FROM _snapshot",
                provenance,
            )
        finally:
            conn.unregister("_snapshot")
        context.log.info(f"{channel}: {snapshot.num_rows} rows from {provenance['source_file']}")
    log_ingest(conn, channel, context.run.run_id, files_seen=len(files), files_skipped=skipped,
               documents_ingested=len(unread), live_fetch=live_fetch)


def log_ingest(
    conn: duckdb.DuckDBPyConnection,
    channel: str,
    run_id: str,
    *,
    files_seen: int,
    files_skipped: int,
    documents_ingested: int,
    live_fetch: bool = False,
) -> None:
    """Record a successful ingest, inside the ingest's own transaction (gone if it rolls back)."""
    conn.execute(INGEST_LOG_DDL)
    conn.execute(f"COMMENT ON TABLE raw.bulletin_ingest_log IS {sql_literal(_INGEST_LOG_COMMENT)}")
    conn.execute(
        "INSERT INTO raw.bulletin_ingest_log VALUES (?, ?, ?, ?, ?, ?, ?)",
        [channel, run_id, datetime.now(UTC), live_fetch, files_seen, files_skipped, documents_ingested],
    )
