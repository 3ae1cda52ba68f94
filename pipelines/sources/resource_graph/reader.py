"""Offline loader of the Resource Graph exports into their raw tables.

DuckDB reads every file itself (`read_json` with explicit column types), all new files of one
JSON shape in one statement; Python only lists the files, hashes them and names the file in any
error (pipelines/ingest/). These are exact API answers, so any problem fails the whole load
(the caller's transaction keeps the last good state) with a SourceFileError naming the file,
the row and the field: required ids, the documented `type` and run `status` / patch
`installationState`, timestamps inside `properties`. Legal oddities load as received
(tests/test_bad_inputs.py).
"""

from __future__ import annotations

import logging
from pathlib import Path

import duckdb

from pipelines.ingest import bulk
from pipelines.ingest.bulk import (
    Check,
    bad_timestamp,
    batches,
    bulk_insert,
    by_shape,
    columns_literal,
    count_rows,
    many_and_one,
    max_size,
    require_bulk,
    sql_in,
    struct_type,
    warn_missing,
)
from pipelines.ingest.files import (
    IngestStats,
    SourceFile,
    folder_files,
    json_top_level,
    max_object_size,
    plan_ingest,
    relative_name,
    sha256_file,
    table_columns,
)

from . import (
    FOLDER,
    INSTALLATION_STATES,
    RAW_TABLES,
    RESOURCE_GRAPH_COLUMNS,
    RESOURCE_GRAPH_TABLES,
    RUN_STATUSES,
)


def resource_graph_checks(arg_table: str) -> list[Check]:
    kind = "patchassessmentresults" if arg_table == "patchassessmentresources" else "patchinstallationresults"
    parent = f"regexp_full_match(lower(type), '.*/{kind}')"
    child = f"regexp_full_match(lower(type), '.*/{kind}/softwarepatches')"
    checks = [
        ("id", "id IS NULL OR trim(id) = ''", "id", "a row needs an 'id'"),
        ("type", "type IS NULL OR NOT regexp_full_match(lower(type), "
         f"'microsoft\\.(compute/virtualmachines|hybridcompute/machines)/{kind}(/softwarepatches)?')",
         "type", f"not a {arg_table} type (…/{kind} or …/{kind}/softwarepatches)"),
        ("properties", "properties IS NOT NULL AND json_type(properties) NOT IN ('OBJECT', 'NULL')",
         "properties", "must be an object"),
        ("properties.status", f"{parent} AND properties->>'status' IS NOT NULL AND "
         f"lower(properties->>'status') NOT IN {sql_in(RUN_STATUSES)}", "properties->>'status'",
         "must be one of " + "/".join(RUN_STATUSES)),
    ]
    for field_name in ("lastModifiedDateTime", "startDateTime"):
        checks.append((f"properties.{field_name}", bad_timestamp(f"properties->>'{field_name}'"),
                       f"properties->>'{field_name}'", "not an ISO 8601 timestamp"))
    if kind == "patchinstallationresults":
        checks.append((
            "properties.installationState",
            f"{child} AND properties->>'installationState' IS NOT NULL AND "
            f"lower(properties->>'installationState') NOT IN {sql_in(INSTALLATION_STATES)}",
            "properties->>'installationState'", "must be one of " + "/".join(INSTALLATION_STATES),
        ))
    return checks


def resource_graph_files(estate_dir: Path, arg_table: str) -> list[Path]:
    return folder_files(estate_dir, FOLDER, f"{arg_table}*.json")


def load_resource_graph(
    conn: duckdb.DuckDBPyConnection,
    estate_dir: Path,
    arg_table: str,
    table: str,
    ingest_run: str,
    log: logging.Logger | None = None,
    full_reload: bool = False,
) -> IngestStats:
    """Rows of one Resource Graph table from `az graph query` output or a bare JSON array."""
    if arg_table not in RESOURCE_GRAPH_TABLES:
        raise ValueError(f"unknown Resource Graph table {arg_table!r}")
    files = resource_graph_files(estate_dir, arg_table)
    todo, stats = plan_ingest(conn, table, RESOURCE_GRAPH_COLUMNS, files, estate_dir, full_reload)
    if not files:
        warn_missing(log, f"Resource Graph {arg_table}", estate_dir.joinpath(*FOLDER))
        return stats
    if not todo:
        return stats
    columns = columns_literal(RESOURCE_GRAPH_COLUMNS)
    names = ", ".join(f'"{n}"' for n in RESOURCE_GRAPH_COLUMNS)
    before = count_rows(conn, table)
    for shape, group in by_shape(todo).items():
        size = max_size(group)
        if shape == "[":
            select = (f"SELECT {names}@FN@ FROM read_json(@SRC@, format='array', "
                      f"columns={columns}, maximum_object_size={size}@OPTS@)")
            many, one = many_and_one(select)
            bulk_insert(conn, table, many, one, group, ingest_run)
            continue
        # `{"totalRecords", "count", "data": [...]}`: each batch of files is parsed once into a
        # temporary table, whose rows are unnested from it (several times faster than unnesting
        # straight out of read_json) and whose figures are kept for azure_population_counts.
        document = (f"read_json(@SRC@, columns={{'data': '{struct_type(RESOURCE_GRAPH_COLUMNS)}[]', "
                    f"{POPULATION_FIELDS}}}, maximum_object_size={size}@OPTS@)")
        many, one = many_and_one(f"SELECT * FROM {document}")
        for batch in batches(group, bulk.DOCUMENT_BATCH_BYTES):
            bulk_insert(conn, table, "SELECT unnest(r), filename FROM (SELECT unnest(data) AS r, filename "
                        "FROM documents)", one, batch, ingest_run, documents=many)
            _keep_figures(conn, arg_table, batch)
        conn.execute("DROP TABLE IF EXISTS documents")
    require_bulk(conn, table, todo, estate_dir, resource_graph_checks(arg_table))
    stats.rows = count_rows(conn, table) - before
    return stats


# The population figures of a capture (`az graph query` prints totalRecords as total_records).
POPULATION_FIELDS = ("'totalRecords': 'BIGINT', 'total_records': 'BIGINT', 'count': 'BIGINT', "
                     "'subscriptions': 'VARCHAR[]'")

POPULATION_FILE_COLUMNS = {
    "arg_table": "VARCHAR", "source_file": "VARCHAR", "source_sha256": "VARCHAR", "subscriptions": "VARCHAR[]",
    "reported_rows": "BIGINT", "fetched_rows": "BIGINT",
}


# What each file said, kept between runs under its name, size and modification time: a daily run
# reads (and hashes) only the files new or changed since, not every day's file again, as the raw
# load's quick check does (pipelines/ingest/files.py); verifying every file reads them all again.
POPULATION_CACHE = "staging.resource_graph_file_figures"


def _population_cache(conn: duckdb.DuckDBPyConnection) -> None:
    spec = ", ".join(f"{name} {kind}" for name, kind in POPULATION_FILE_COLUMNS.items())
    conn.execute("CREATE SCHEMA IF NOT EXISTS staging")
    conn.execute(f"CREATE TABLE IF NOT EXISTS {POPULATION_CACHE} ({spec}, size BIGINT, mtime_ns BIGINT)")


def _keep_figures(conn: duckdb.DuckDBPyConnection, arg_table: str, files: list[SourceFile]) -> None:
    """The figures of the files just read into the temporary table `documents`, into the cache
    under the stamp the load planned them with, so that azure_population_counts does not parse
    them again."""
    _population_cache(conn)
    params = {"t": arg_table, "paths": [str(f.path) for f in files], "names": [f.name for f in files],
              "shas": [f.sha256 for f in files], "sizes": [f.size for f in files],
              "mtimes": [f.mtime_ns for f in files]}
    conn.execute(f"DELETE FROM {POPULATION_CACHE} WHERE arg_table = $t AND source_file IN (SELECT unnest($names))",
                 {"t": arg_table, "names": params["names"]})
    conn.execute(
        f"INSERT INTO {POPULATION_CACHE} SELECT $t, $names[i], $shas[i], subscriptions, "
        "coalesce(totalRecords, total_records), count, $sizes[i], $mtimes[i] "
        "FROM (SELECT *, list_position($paths, filename) AS i FROM documents)", params)


def resource_graph_population_files(conn: duckdb.DuckDBPyConnection, estate_dir: Path, verify: bool = False) -> None:
    """Temporary table `population_files`: what each Resource Graph file says of its population,
    `totalRecords` (or `total_records`, as az prints it) and `count`, for the completeness table.
    Its SHA-256 ties it to the rows loaded: a renamed or copied file is held under its first name.
    `verify` (RunSettings.verify_files) reads and hashes every file again."""
    spec = ", ".join(f"{name} {kind}" for name, kind in POPULATION_FILE_COLUMNS.items())
    conn.execute(f"CREATE OR REPLACE TEMP TABLE population_files ({spec})")
    _population_cache(conn)
    stats = {(arg_table, relative_name(path, estate_dir)): (path, path.stat())
             for arg_table in RESOURCE_GRAPH_TABLES for path in resource_graph_files(estate_dir, arg_table)}
    keys = [(t, name, stat.st_size, stat.st_mtime_ns) for (t, name), (_, stat) in stats.items()]
    conn.execute("CREATE OR REPLACE TEMP TABLE population_stats "
                 "(arg_table VARCHAR, source_file VARCHAR, size BIGINT, mtime_ns BIGINT)")
    if keys:  # one statement of lists: executemany costs a statement per file (hundreds a year)
        conn.execute("INSERT INTO population_stats SELECT unnest($t), unnest($f), unnest($s), unnest($m)",
                     {"t": [k[0] for k in keys], "f": [k[1] for k in keys],
                      "s": [k[2] for k in keys], "m": [k[3] for k in keys]})
    columns = ", ".join(POPULATION_FILE_COLUMNS)
    if not verify:
        conn.execute(f"INSERT INTO population_files SELECT {columns} FROM {POPULATION_CACHE} "
                     "SEMI JOIN population_stats USING (arg_table, source_file, size, mtime_ns)")
    known = set(conn.execute("SELECT arg_table, source_file FROM population_files").fetchall())
    # A file the raw load has just read under the same stamp is not hashed a second time.
    stamped = {}
    if not verify and table_columns(conn, "raw.ingested_files")[-1:] == ["mtime_ns"]:
        stamped = {(RAW_TABLES[raw], name): (sha, size, mtime) for raw, name, sha, size, mtime in
                   conn.execute("SELECT raw_table, source_file, source_sha256, size, mtime_ns FROM raw.ingested_files "
                                "WHERE raw_table IN (SELECT unnest($tables))",
                                {"tables": list(RAW_TABLES)}).fetchall()}

    def sha256_of(arg_table: str, name: str, path: Path, stat) -> str:
        held = stamped.get((arg_table, name))
        return held[0] if held and held[1:] == (stat.st_size, stat.st_mtime_ns) else sha256_file(path)

    for (arg_table, name), (path, stat) in stats.items():
        if (arg_table, name) in known:
            continue
        if not stat.st_size or json_top_level(path) != "{":
            conn.execute("INSERT INTO population_files (arg_table, source_file, source_sha256) "
                         "VALUES ($t, $f, $sha)", {"t": arg_table, "f": name, "sha": sha256_of(arg_table, name, path, stat)})
            continue
        conn.execute(
            "INSERT INTO population_files SELECT $t, $f, $sha, subscriptions, "
            f"coalesce(totalRecords, total_records), count FROM read_json($path, columns={{{POPULATION_FIELDS}}}, "
            f"maximum_object_size={max_object_size(path)})",
            {"t": arg_table, "f": name, "sha": sha256_of(arg_table, name, path, stat), "path": str(path)},
        )
    conn.execute(f"CREATE OR REPLACE TABLE {POPULATION_CACHE} AS SELECT f.*, s.size, s.mtime_ns "
                 "FROM population_files AS f JOIN population_stats AS s USING (arg_table, source_file) "
                 "ORDER BY arg_table, source_file")
