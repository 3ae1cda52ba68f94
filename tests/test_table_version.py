"""The version pipelines/unchanged.py gives a raw table: from the manifest's files, not its rows."""

import duckdb

from pipelines.unchanged import table_version


def _warehouse():
    conn = duckdb.connect()
    conn.execute("CREATE SCHEMA raw; CREATE SCHEMA staging")
    conn.execute("CREATE TABLE raw.scan (source_file VARCHAR, source_sha256 VARCHAR, v INTEGER)")
    conn.execute("INSERT INTO raw.scan VALUES ('a.json', 'aa', 1), ('a.json', 'aa', 2), ('b.json', 'bb', 3)")
    conn.execute("CREATE TABLE raw.ingested_files (raw_table VARCHAR, source_file VARCHAR, source_sha256 VARCHAR)")
    conn.execute("INSERT INTO raw.ingested_files VALUES ('raw.scan', 'a.json', 'aa'), ('raw.scan', 'b.json', 'bb'), "
                 "('raw.other', 'c.json', 'cc')")
    return conn


def test_manifest_version_counts_rows_and_files_of_the_table_only():
    conn = _warehouse()
    version = table_version(conn, "raw.scan")
    # 3 rows, 2 files listed for raw.scan (c.json belongs to another table)
    assert version.startswith("files:3:2:")
    conn.execute("INSERT INTO raw.ingested_files VALUES ('raw.other', 'd.json', 'dd')")
    assert table_version(conn, "raw.scan") == version  # another table's file
    conn.execute("UPDATE raw.ingested_files SET source_sha256 = 'b2' WHERE source_file = 'b.json'")
    changed = table_version(conn, "raw.scan")
    assert changed.startswith("files:3:2:") and changed != version  # a changed file
    conn.execute("DELETE FROM raw.scan WHERE v = 1")
    assert table_version(conn, "raw.scan").startswith("files:2:2:")  # a row gone


def test_without_manifest_rows_or_as_a_view_the_rows_are_read():
    conn = _warehouse()
    conn.execute("DELETE FROM raw.ingested_files WHERE raw_table = 'raw.scan'")
    assert table_version(conn, "raw.scan").startswith("rows:3:")
    conn.execute("CREATE VIEW raw.lake_scan AS SELECT * FROM raw.scan")
    conn.execute("INSERT INTO raw.ingested_files VALUES ('raw.lake_scan', 'a.json', 'aa')")
    assert table_version(conn, "raw.lake_scan").startswith("rows:3:")
