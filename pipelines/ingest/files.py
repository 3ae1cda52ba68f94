"""Files and the ingestion plan: what each estate file is, and which files a load reads.

Raw tables accumulate. `raw.ingested_files` lists every file read into a raw table with its
SHA-256 (also the files that gave no rows). A file whose (name, SHA-256) is already held is
skipped; a file whose SHA-256 is held under another name (a copy, a rename) adds nothing; a
changed file with a known name replaces only its own rows. `full_reload=True`, or a table whose
columns are not the expected ones, rebuilds the table from the files present.

The quick check (as rsync and make do): the manifest keeps each file's size and modification
time (nanoseconds) when it was read; a file whose name, size and mtime equal the manifest's is
taken as unchanged without being read, so a daily run reads only the new files, not the whole
history. Any other file is hashed: identical bytes (a touched file) are not re-ingested, its new
stamp is recorded; changed bytes are re-ingested. `VERIFY_FILES` (`patchledger run
--verify-files`, PATCHLEDGER_VERIFY_FILES) hashes every file instead, for a rewrite that kept
both the size and the mtime.

Arrival: each file version (name and SHA-256) keeps when it landed in the estate (`landed_at`,
its modification time in UTC when first read) and when a run first read it (`first_seen_at`, the
run's wall clock). A file "arrived" at its `landed_at` as first recorded: a full reload keeps the
times of the versions it had, so touching a file later does not move its arrival. A pack "as
known then" (pipelines/pastdate.py) leaves out what arrived after its date.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from pipelines.ingest.errors import SourceFileError

# Provenance columns every raw table ends with (architecture.md, "Ingest").
PROVENANCE = {"source_file": "VARCHAR", "source_sha256": "VARCHAR", "ingest_run": "VARCHAR"}

# Every file read into a raw table (also those that gave no rows), so reruns skip them.
MANIFEST_DDL = (
    "CREATE TABLE IF NOT EXISTS raw.ingested_files "
    "(raw_table VARCHAR, source_file VARCHAR, source_sha256 VARCHAR, landed_at TIMESTAMPTZ, "
    "first_seen_at TIMESTAMPTZ, size BIGINT, mtime_ns BIGINT)"
)


def ensure_manifest(conn: duckdb.DuckDBPyConnection) -> None:
    """raw.ingested_files with its arrival and stamp columns (added to a manifest written before
    them; a file without a stamp is hashed once more, then stamped)."""
    conn.execute(MANIFEST_DDL)
    for column, kind in (("landed_at", "TIMESTAMPTZ"), ("first_seen_at", "TIMESTAMPTZ"),
                         ("size", "BIGINT"), ("mtime_ns", "BIGINT")):
        conn.execute(f"ALTER TABLE raw.ingested_files ADD COLUMN IF NOT EXISTS {column} {kind}")


def landed_at(path: Path) -> datetime:
    """When the file landed in the estate: its modification time, in UTC."""
    return datetime.fromtimestamp(path.stat().st_mtime, UTC)

_BLANK = b"\xef\xbb\xbf \t\r\n"

# The files a partitioned run reads, by name (pipelines/partitions.py, set around one load by the
# raw scan assets); None reads every file. A load that replaces an existing table reads them all.
INGEST_WINDOW: ContextVar[Callable[[str], bool] | None] = ContextVar("ingest_window", default=None)

# Hash every file rather than trust an unchanged size and mtime (set around one load from
# RunSettings.verify_files).
VERIFY_FILES: ContextVar[bool] = ContextVar("verify_files", default=False)


def file_stamp(path: Path) -> tuple[int, int]:
    """(size, mtime in nanoseconds): what the quick check compares with the manifest."""
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


def unchanged_by_stamp(held: tuple | None, stamp: tuple[int, int]) -> bool:
    """The quick check: the manifest's (sha256, size, mtime_ns) of a file shows the same stamp
    (never when verifying every file)."""
    return not VERIFY_FILES.get() and held is not None and held[0] is not None and tuple(held[1:]) == stamp


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_files(paths: list[Path]) -> dict[Path, str]:
    """The SHA-256 of each file; hashlib releases the GIL, so threads hash files side by side."""
    if len(paths) < 2:
        return {path: sha256_file(path) for path in paths}
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        return dict(zip(paths, pool.map(sha256_file, paths), strict=True))


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
    if not data.lstrip(_BLANK):
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


def check_not_empty(path: Path, name: str) -> None:
    """Cheap checks before DuckDB reads the file: not empty, and gzip is checked in full."""
    with path.open("rb") as handle:
        head = handle.read(65536)
    if head[:2] == b"\x1f\x8b":
        check_text_file(path, name)
        return
    if not head.lstrip(_BLANK) and len(head) < 65536:
        raise SourceFileError(f"{name}: empty file")


def json_top_level(path: Path) -> str:
    """'[' or '{': the first significant character of a JSON file (a BOM is skipped)."""
    with path.open("rb") as handle:
        head = handle.read(4096).lstrip(_BLANK)
    if not head or head[:1] not in (b"[", b"{"):
        raise SourceFileError(f"{path.name}: not a JSON array or object")
    return head[:1].decode()


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
    """What one load did: files read, skipped as unchanged, as copies or as dated outside the
    run's days, replaced; rows added."""

    files_seen: int = 0
    files_read: list[str] = field(default_factory=list)
    files_unchanged: int = 0
    files_copies: list[str] = field(default_factory=list)
    files_replaced: list[str] = field(default_factory=list)
    full_reload: bool = False
    rows: int = 0
    files_other_days: int = 0

    def metadata(self) -> dict:
        return {
            "files_seen": self.files_seen,
            "files_read": len(self.files_read),
            "files_unchanged": self.files_unchanged,
            "files_copies_skipped": len(self.files_copies),
            "files_replaced": len(self.files_replaced),
            "full_reload": self.full_reload,
            "files_other_days": self.files_other_days,
        }


@dataclass(frozen=True)
class SourceFile:
    path: Path
    name: str
    sha256: str
    size: int | None = None
    mtime_ns: int | None = None


def plan_ingest(
    conn: duckdb.DuckDBPyConnection,
    table: str,
    columns: dict[str, str],
    files: list[Path],
    base: Path,
    full_reload: bool = False,
    extra_delete: str | None = None,
) -> tuple[list[SourceFile], IngestStats]:
    """The files to read into `table` (created or, on a full reload / schema change, replaced),
    and the statistics of the load, which the loader completes with the rows it adds.

    Unchanged files and copies of ingested files are skipped; the rows of a changed file are
    deleted here (and, with `extra_delete`, its rows of another table: SQL taking the name list
    as $names and the table as $table)."""
    stats = IngestStats(files_seen=len(files), full_reload=full_reload)
    expected = [*columns, *PROVENANCE]
    known: dict[str, str] = {}
    ensure_manifest(conn)
    # The arrival of every version already recorded, kept through a reload or a re-read.
    arrived, stamps = {}, {}
    for name, sha, landed, seen, size, mtime in conn.execute(
            "SELECT source_file, source_sha256, landed_at, first_seen_at, size, mtime_ns "
            "FROM raw.ingested_files WHERE raw_table = ?", [table]).fetchall():
        arrived[(name, sha)] = (landed, seen)
        stamps[name] = (sha, size, mtime)
    existing = table_columns(conn, table)
    window = INGEST_WINDOW.get()
    if existing and (full_reload or existing != expected):
        window = None  # an existing table replaced: from every file present
    if full_reload or existing != expected:
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
    restamp: list[tuple[str, int, int]] = []
    listed = [(path, relative_name(path, base), file_stamp(path)) for path in files]
    # The quick check first; the files it cannot clear are hashed, several at a time.
    trusted = {name for _, name, stamp in listed
               if known.get(name) is not None and unchanged_by_stamp(stamps.get(name), stamp)
               and stamps[name][0] == known[name]}
    hashed = sha256_files([path for path, name, _ in listed if name not in trusted])
    for path, name, stamp in listed:
        held = stamps.get(name)
        if name in trusted:
            stats.files_unchanged += 1  # not read
            continue
        sha = hashed[path]
        if known.get(name) == sha:
            stats.files_unchanged += 1
            if held is not None and tuple(held[1:]) != stamp:
                restamp.append((name, *stamp))  # touched, same bytes: quick-checked from now on
            continue
        if window is not None and not window(name):
            stats.files_other_days += 1  # new or changed, left for the run of its day
            continue
        if name in known:
            stats.files_replaced.append(name)
        if sha in known_shas:
            stats.files_copies.append(name)
            continue
        todo.append(SourceFile(path, name, sha, *stamp))
    stats.files_read = [f.name for f in todo]
    changed = [f.name for f in todo] + stats.files_replaced
    if changed:
        conn.execute("DELETE FROM raw.ingested_files WHERE raw_table = $table AND source_file IN "
                     "(SELECT unnest($names))", {"table": table, "names": changed})
    if todo:
        now = datetime.now(UTC)
        times = [arrived.get((f.name, f.sha256), (landed_at(f.path), now)) for f in todo]
        conn.execute("INSERT INTO raw.ingested_files SELECT $table, unnest($names), unnest($shas), "
                     "unnest($landed), unnest($seen), unnest($sizes), unnest($mtimes)",
                     {"table": table, "names": [f.name for f in todo], "shas": [f.sha256 for f in todo],
                      "landed": [t[0] for t in times], "seen": [t[1] for t in times],
                      "sizes": [f.size for f in todo], "mtimes": [f.mtime_ns for f in todo]})
    if restamp:
        conn.execute("UPDATE raw.ingested_files AS m SET size = s.size, mtime_ns = s.mtime_ns FROM "
                     "(SELECT unnest($names) AS name, unnest($sizes) AS size, unnest($mtimes) AS mtime_ns) AS s "
                     "WHERE m.raw_table = $table AND m.source_file = s.name",
                     {"table": table, "names": [r[0] for r in restamp], "sizes": [r[1] for r in restamp],
                      "mtimes": [r[2] for r in restamp]})
    if stats.files_replaced:
        conn.execute(f"DELETE FROM {table} WHERE source_file IN (SELECT unnest($names))",
                     {"names": stats.files_replaced})
    if extra_delete and (todo or stats.files_replaced):
        names = [f.name for f in todo] + stats.files_replaced
        conn.execute(extra_delete, {"names": names, "table": table} if "$table" in extra_delete else {"names": names})
    return todo, stats


def folder_files(estate_dir: Path, folder: tuple[str, ...], pattern: str = "*.json") -> list[Path]:
    """The files of an estate folder matching `pattern`, in name order."""
    return sorted(p for p in estate_dir.joinpath(*folder).glob(pattern) if p.is_file())
