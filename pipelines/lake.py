"""Lake mode: `raw` and `staging` kept as hive-partitioned Parquet beside the DuckDB file.

Set PATCHLEDGER_LAKE to a folder (or an fsspec URL such as `abfs://container/patchledger` with
adlfs installed, for Azure Blob / ADLS Gen2) and:

- each raw scan table (Resource Graph, patch operations, Log Analytics) is written as
  `<lake>/raw/<table>/day=<day of the source file>/file=<sha256 of the file>/*.parquet`. A raw asset
  validates and converts its new files in an in-memory DuckDB and writes only Parquet: it never
  holds the warehouse while it works, so ingestion can fan out over processes or pods (Dagster's
  multiprocess or Kubernetes executor). The folder of a file is its ingestion record: a file
  already in the lake (listed in `<lake>/raw/_ingested/<table>.parquet`, empty files included)
  is skipped, a changed file replaces its own folder, `full_reload` rewrites the table;
- `staging.patch_observations` and `staging.assessment_runs` are written as
  `<lake>/staging/<table>/<version>/day=<observation day>/*.parquet`: a build writes the days it
  recomputes (every day, or those from the first one new or changed files touch) as a new
  version, the view reads each day from one folder (staging.lake_days), and the folders it no
  longer reads are removed once the warehouse points at the new ones;
- the warehouse keeps views of those names over the Parquet (so the SQL, the notebooks and the
  analysts' queries are the same in both modes), the small staging tables, the marts and the
  ledger. One writer builds the marts, as in the default mode.
"""

from __future__ import annotations

import os
import re
import uuid
from datetime import date
from pathlib import Path

import duckdb
import fsspec

from pipelines.ingest.files import MANIFEST_DDL, IngestStats
from pipelines.warehouse import _checked, comment_table, create_macros, read_sql, sql_literal

LAKE_ENV = "PATCHLEDGER_LAKE"

# The staging tables kept in the lake, with the timestamp whose UTC day partitions them.
STAGING_PARTITIONS = {
    "staging.assessment_runs": "assessed_at",
    "staging.patch_observations": "observed_at",
}

# The folders each staging view reads, one per day (a day's rows are in exactly one folder).
LAKE_DAYS_DDL = "CREATE TABLE IF NOT EXISTS staging.lake_days (table_name VARCHAR, day VARCHAR, folder VARCHAR)"

# The day a source file covers: the date in its name (daily exports), else 'undated'.
_FILE_DAY = r"(\d{4}-\d{2}-\d{2})"


def lake_root() -> str | None:
    """The lake location, or None when the warehouse keeps everything in its own file."""
    value = os.environ.get(LAKE_ENV, "").strip()
    if not value:
        return None
    if "://" in value:
        return value.rstrip("/")
    path = Path(value)
    return str(path if path.is_absolute() else Path.cwd() / path)


class Lake:
    def __init__(self, root: str) -> None:
        self.root = root
        self.fs, _ = fsspec.core.url_to_fs(root)
        self.remote = "://" in root

    def register(self, conn: duckdb.DuckDBPyConnection) -> None:
        """Let DuckDB read and write a remote lake through the same fsspec filesystem."""
        if not self.remote:
            return  # DuckDB reads and writes local folders itself
        names = self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,)
        if not any(conn.filesystem_is_registered(name) for name in names):
            conn.register_filesystem(self.fs)

    def folder(self, table: str) -> str:
        schema, name = _checked(table).split(".")
        return f"{self.root}/{schema}/{name}"

    def _fs_path(self, url: str) -> str:
        return url if not self.remote else self.fs._strip_protocol(url)

    def files(self, folder: str) -> list[str]:
        return sorted(self.fs.glob(self._fs_path(folder) + "/**/*.parquet"))

    def remove(self, folder: str) -> None:
        path = self._fs_path(folder)
        if self.fs.exists(path):
            self.fs.rm(path, recursive=True)

    def scan(self, folder: str) -> str:
        """SQL reading every Parquet file under `folder` with the table's own columns."""
        glob = folder + "/**/*.parquet"
        return f"read_parquet({sql_literal(glob)}, hive_partitioning = false, union_by_name = true)"

    # Raw tables -----------------------------------------------------------------------------

    def ingested_list(self, table: str) -> str:
        """The Parquet list of every file read into `table` (also those that gave no rows)."""
        schema, name = _checked(table).split(".")
        return f"{self.root}/{schema}/_ingested/{name}.parquet"

    def prepare_raw(self, scratch: duckdb.DuckDBPyConnection, table: str, full_reload: bool) -> None:
        """Give the in-memory `scratch` an empty `table` with the lake's columns and the list of
        files the lake holds, so the loader reads only new or changed files."""
        self.register(scratch)
        scratch.execute("CREATE SCHEMA IF NOT EXISTS raw")
        folder = self.folder(table)
        if full_reload:
            self.remove(folder)
            self.remove(self.ingested_list(table))
        scratch.execute(MANIFEST_DDL)
        if not self.files(folder):
            return
        scratch.execute(f"CREATE TABLE {table} AS SELECT * FROM {self.scan(folder)} LIMIT 0")
        if self.fs.exists(self._fs_path(self.ingested_list(table))):
            scratch.execute(
                # BY NAME: a listing written before the arrival columns gives NULL times.
                f"INSERT INTO raw.ingested_files BY NAME SELECT * FROM read_parquet({sql_literal(self.ingested_list(table))})"
            )

    def write_raw(self, scratch: duckdb.DuckDBPyConnection, table: str, stats: IngestStats) -> int:
        """Write the rows the loader added to `scratch` (one folder per source file), remove the
        folders of files replaced by a new version (all of them when the loader reloaded the
        table because the lake's columns were not its own) and rewrite the list of files read.
        Returns the rows written."""
        folder = self.folder(table)
        if stats.full_reload:
            self.remove(folder)
        elif stats.files_replaced:
            for path in self._folders_of(table, stats.files_replaced):
                self.fs.rm(path, recursive=True)
        rows = scratch.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]
        self.fs.makedirs(self._fs_path(folder), exist_ok=True)  # DuckDB creates one level only
        if rows:
            scratch.execute(
                f"COPY (SELECT *, coalesce(nullif(regexp_extract(source_file, '{_FILE_DAY}', 1), ''), "
                f"'undated') AS day, source_sha256 AS file FROM {table}) TO {sql_literal(folder)} "
                "(FORMAT parquet, PARTITION_BY (day, file), OVERWRITE_OR_IGNORE, "
                "FILENAME_PATTERN 'part_{i}')"
            )
        elif not self.files(folder):
            # An empty table still needs its columns in the lake for the view.
            scratch.execute(f"COPY (SELECT * FROM {table}) TO {sql_literal(folder + '/empty.parquet')} (FORMAT parquet)")
        listing = self.ingested_list(table)
        self.fs.makedirs(self._fs_path(listing).rsplit("/", 1)[0], exist_ok=True)
        scratch.execute(
            f"COPY (SELECT * FROM raw.ingested_files WHERE raw_table = $table ORDER BY source_file) "
            f"TO {sql_literal(listing)} (FORMAT parquet)",
            {"table": table},
        )
        return rows

    def _folders_of(self, table: str, names: list[str]) -> list[str]:
        """The partition folders holding rows of the source files `names`."""
        conn = duckdb.connect()
        try:
            self.register(conn)
            found = conn.execute(
                f"SELECT DISTINCT filename FROM read_parquet({sql_literal(self.folder(table) + '/**/*.parquet')}, "
                "hive_partitioning = false, filename = true) WHERE source_file IN (SELECT unnest($names))",
                {"names": names},
            ).fetchall()
        finally:
            conn.close()
        return sorted({self._fs_path(f).rsplit("/", 1)[0] for (f,) in found})

    def attach_raw(self, conn: duckdb.DuckDBPyConnection, table: str) -> None:
        """The warehouse view of a raw table (replacing a table of that name, e.g. after
        switching a warehouse to lake mode)."""
        self.register(conn)
        _drop_table(conn, table)
        conn.execute(f"CREATE OR REPLACE VIEW {table} AS SELECT * FROM {self.scan(self.folder(table))}")

    # Staging tables -------------------------------------------------------------------------

    def build_staging(self, conn: duckdb.DuckDBPyConnection, table: str, sql_name: str,
                      params: dict | None = None, from_day: date | None = None) -> list[str]:
        """Write `sql/<sql_name>.sql`'s result as a new version folder of the table and point the
        warehouse view at it: every day, or (with `from_day`, the SQL giving only the rows of the
        days from it on) those days, the earlier days read from the folders that already hold
        them. The folders the view reads are recorded in staging.lake_days, in the warehouse's
        transaction. Returns the folders no longer read, to remove after the commit."""
        self.register(conn)
        create_macros(conn)
        folder = self.folder(table)
        version = f"{folder}/v{uuid.uuid4().hex[:12]}"
        self.fs.makedirs(self._fs_path(folder), exist_ok=True)
        day_column = STAGING_PARTITIONS[table]
        query = read_sql(sql_name)
        conn.execute(
            f"COPY (SELECT *, coalesce({day_column}::DATE::VARCHAR, 'undated') AS day FROM ({query})) "
            f"TO {sql_literal(version)} (FORMAT parquet, PARTITION_BY (day), FILENAME_PATTERN 'part_{{i}}')",
            params or None,
        )
        conn.execute(LAKE_DAYS_DDL)
        old = self.days(conn, table)
        kept = [] if from_day is None else [(d, f) for d, f in old if d < from_day.isoformat()]
        written = sorted({self._fs_path(p).rsplit("/", 2)[-2] for p in self.files(version)})
        read = kept + [(name.removeprefix("day="), f"{version}/{name}") for name in written]
        if not read:
            conn.execute(f"COPY (SELECT * FROM ({query}) LIMIT 0) TO {sql_literal(version + '/empty.parquet')} "
                         "(FORMAT parquet)", params or None)
            read = [("", version)]
        conn.execute("DELETE FROM staging.lake_days WHERE table_name = ?", [table])
        conn.executemany("INSERT INTO staging.lake_days VALUES (?, ?, ?)", [[table, d, f] for d, f in read])
        _drop_table(conn, table)
        globs = "[" + ", ".join(sql_literal(f + "/*.parquet") for _, f in read) + "]"
        conn.execute(f"CREATE OR REPLACE VIEW {table} AS SELECT * FROM "
                     f"read_parquet({globs}, hive_partitioning = false, union_by_name = true)")
        comment_table(conn, table, sql_name, kind="VIEW")
        return [f for d, f in old if (d, f) not in kept]

    def days(self, conn: duckdb.DuckDBPyConnection, table: str) -> list[tuple[str, str]]:
        """The (day, folder) pairs the view of a staging table reads (none before the first
        build that recorded them)."""
        conn.execute(LAKE_DAYS_DDL)
        return [tuple(r) for r in conn.execute(
            "SELECT day, folder FROM staging.lake_days WHERE table_name = ? ORDER BY day", [table]).fetchall()]

    def remove_unread(self, table: str, folders: list[str]) -> None:
        """After the commit: the folders the view no longer reads, and version folders left empty."""
        for folder in folders:
            self.remove(folder)
        base = self._fs_path(self.folder(table))
        for entry in self.fs.ls(base, detail=False):
            if re.search(r"/v[0-9a-f]{12}$", entry) and not self.fs.ls(entry, detail=False):
                self.fs.rm(entry, recursive=True)


def _drop_table(conn: duckdb.DuckDBPyConnection, table: str) -> None:
    schema, name = table.split(".")
    kind = conn.execute(
        "SELECT table_type FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
        [schema, name],
    ).fetchall()
    if kind and kind[0][0] == "BASE TABLE":
        conn.execute(f"DROP TABLE {table}")


def current_lake() -> Lake | None:
    root = lake_root()
    return Lake(root) if root else None
