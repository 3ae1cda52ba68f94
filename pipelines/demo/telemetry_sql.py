"""DuckDB helpers of the telemetry writers: the SQL macros the files are written with, and the
parallel COPY runner."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import duckdb

MACROS = """
CREATE MACRO guid(s) AS
    substr(md5(s), 1, 8) || '-' || substr(md5(s), 9, 4) || '-4' || substr(md5(s), 14, 3)
    || '-8' || substr(md5(s), 18, 3) || '-' || substr(md5(s), 21, 12);
CREATE MACRO ts(us) AS strftime(make_timestamp(us), '%Y-%m-%dT%H:%M:%S.%fZ');
-- The portal's "Export to CSV" display format: 5/25/2023, 4:32:49.469 AM
CREATE MACRO portal_ts(us) AS strftime(make_timestamp(us), '%-m/%-d/%Y, %-I:%M:%S.%g %p');
-- Linux agents report the VM GUID with its first three groups byte-swapped.
CREATE MACRO swapped(g) AS
    substr(g, 7, 2) || substr(g, 5, 2) || substr(g, 3, 2) || substr(g, 1, 2) || '-'
    || substr(g, 12, 2) || substr(g, 10, 2) || '-' || substr(g, 17, 2) || substr(g, 15, 2)
    || substr(g, 19);
"""



def copy_all(con: duckdb.DuckDBPyConnection, statements: list[str]) -> None:
    """Run the per-day COPY statements on parallel cursors: JSON/CSV encoding is the bottleneck
    and one statement keeps a single core busy."""
    workers = min(4, os.cpu_count() or 1)

    def run(chunk: list[str]) -> None:
        cursor = con.cursor()
        for statement in chunk:
            cursor.execute(statement)
        cursor.close()

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(run, [statements[i::workers] for i in range(workers)]))

