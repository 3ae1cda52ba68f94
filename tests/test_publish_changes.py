"""The published copy is rewritten only where the live file changed, yet replaced atomically: a
session holding a copy keeps its snapshot, and a spare still open is never written into."""

from __future__ import annotations

import filecmp

import duckdb

from pipelines.publish import BLOCK, publish_warehouse


def _live(tmp_path):
    live = tmp_path / "warehouse.duckdb"
    conn = duckdb.connect(str(live))
    # About 30 MB of hashes (DuckDB compresses them little), then a small table a run changes.
    conn.execute("CREATE TABLE big AS SELECT range AS id, md5(range::VARCHAR) AS h FROM range(1500000)")
    conn.execute("CREATE TABLE small AS SELECT 1 AS n")
    return live, conn


def test_the_third_publication_writes_only_the_changed_blocks(tmp_path):
    live, conn = _live(tmp_path)
    target = tmp_path / "warehouse-read.duckdb"

    first = publish_warehouse(conn, live, target)
    size = live.stat().st_size
    assert first == {"mode": "whole file", "bytes_written": size}
    second = publish_warehouse(conn, live, target)  # no spare yet: the first copy becomes it
    assert second["mode"] == "whole file"

    conn.execute("UPDATE small SET n = 2")
    third = publish_warehouse(conn, live, target)
    assert third["mode"] == "changed blocks"
    # One table of one row changed: a few blocks (headers, catalog, the table), not the file.
    assert 0 < third["bytes_written"] <= 16 * BLOCK < size / 4
    assert filecmp.cmp(live, target, shallow=False)
    reader = duckdb.connect(str(target), read_only=True)
    assert reader.execute("SELECT n FROM small").fetchone()[0] == 2
    assert reader.execute("SELECT count(*), max(id) FROM big").fetchone() == (1500000, 1499999)
    reader.close()
    assert not list(tmp_path.glob(".*partial"))


def test_a_session_on_the_copy_keeps_its_snapshot_and_its_file_is_never_rewritten(tmp_path):
    live, conn = _live(tmp_path)
    target = tmp_path / "warehouse-read.duckdb"
    publish_warehouse(conn, live, target)
    publish_warehouse(conn, live, target)

    reader = duckdb.connect(str(target), read_only=True)  # an analyst's session, left open
    conn.execute("UPDATE small SET n = 2")
    assert publish_warehouse(conn, live, target)["mode"] == "changed blocks"  # the spare was free
    conn.execute("UPDATE small SET n = 3")
    # The spare now is the file the session reads: copied whole instead.
    assert publish_warehouse(conn, live, target)["mode"] == "whole file"
    assert reader.execute("SELECT n FROM small").fetchone()[0] == 1
    reader.close()
    fresh = duckdb.connect(str(target), read_only=True)
    assert fresh.execute("SELECT n FROM small").fetchone()[0] == 3
    fresh.close()
    # And once the session is gone, its old file is rewritten where it differs.
    conn.execute("UPDATE small SET n = 4")
    assert publish_warehouse(conn, live, target)["mode"] == "changed blocks"
    assert filecmp.cmp(live, target, shallow=False)
