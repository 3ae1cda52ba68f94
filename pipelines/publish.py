"""The analysts' copy of the warehouse: a read-only snapshot replaced after each successful run.

DuckDB lets one process write a file, and a reader that holds it (a notebook, a BI tool)
makes the next run wait and fail. Analysts open the published copy instead
(settings.published_path(), `warehouse-read.duckdb` beside the warehouse): the run checkpoints
the live file, brings a file beside the copy to the live file's bytes and renames it over the
copy. A rename never waits for a reader: a session already open keeps reading the snapshot it
opened, the next one opens the new file.

Only what changed is written: the copy replaced by the previous publication is kept beside it
(`.<name>.spare`); when no session holds it any more, the next publication rewrites only the
blocks in which it differs from the live file (a daily run changes a small part of the file)
and renames it into place. A spare still open in some session is left to it and the live file
is copied whole, as on the first publication.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import struct
from pathlib import Path

import duckdb

# DuckDB's block size: the unit in which a checkpoint rewrites the file.
BLOCK = 256 * 1024


def publish_warehouse(conn: duckdb.DuckDBPyConnection, live: Path, target: Path) -> dict:
    """Replace `target` atomically with a copy of the live warehouse (held by `conn`, the run's
    one writer); returns how: `mode` ('changed blocks' or 'whole file') and `bytes_written`."""
    conn.execute("CHECKPOINT")  # everything in the file itself, nothing left in the WAL
    partial = target.with_name(f".{target.name}.partial")
    spare = target.with_name(f".{target.name}.spare")
    try:
        written = None
        if spare.exists():
            os.replace(spare, partial)
            written = _write_changed_blocks(live, partial)
        mode = "changed blocks"
        if written is None:  # no spare, or a session still reads it: it keeps its inode
            partial.unlink(missing_ok=True)
            shutil.copyfile(live, partial)
            written, mode = partial.stat().st_size, "whole file"
        with partial.open("rb") as handle:
            os.fsync(handle.fileno())
        if target.exists():
            os.link(target, spare)  # the copy readers hold now: the next publication's spare
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return {"mode": mode, "bytes_written": written}


def _write_changed_blocks(live: Path, copy: Path) -> int | None:
    """Make `copy` (an earlier copy of `live`) byte-equal to `live`, writing only the blocks that
    differ; None when a session (of any process, this one included) has `copy` open."""
    lock = getattr(fcntl, "F_OFD_SETLK", None)  # Linux: conflicts with DuckDB's locks, even in-process
    if lock is None:
        return None
    with copy.open("r+b") as out, live.open("rb") as source:
        try:
            fcntl.fcntl(out, lock, struct.pack("hhqqi", fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0))
        except OSError:
            return None
        written = offset = 0
        while block := source.read(BLOCK):
            out.seek(offset)
            if out.read(len(block)) != block:
                out.seek(offset)
                out.write(block)
                written += len(block)
            offset += len(block)
        out.truncate(offset)
    return written
