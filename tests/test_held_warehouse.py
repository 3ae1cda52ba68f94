"""During a run the warehouse stays open in the run's process, so a step's connection costs no
open and no checkpoint; another process waiting for the file still gets it at the next step
boundary, as when every step opened and closed it."""

from __future__ import annotations

import subprocess
import sys
import time

import duckdb

from pipelines.resources import WarehouseResource

WRITER = """
import sys
from pipelines.resources import connect_warehouse
conn = connect_warehouse(sys.argv[1], lock_timeout_seconds=float(sys.argv[2]))
conn.execute("INSERT INTO staging.steps VALUES ('other process')")
conn.close()
print("written")
"""


def _other_process(database, timeout: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", WRITER, str(database), str(timeout)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_the_file_stays_open_between_steps_until_another_process_waits(tmp_path):
    database = tmp_path / "warehouse.duckdb"
    warehouse = WarehouseResource(database=str(database))
    warehouse.setup_for_execution(None)  # what Dagster does when a run starts
    try:
        with warehouse.get_connection() as conn:
            conn.execute("CREATE TABLE staging.steps (step VARCHAR)")
        # Between two steps another process cannot open the file at once ...
        refused = _other_process(database, 0)
        assert refused.wait(timeout=120) != 0
        assert "is locked by" in refused.stderr.read()
        # ... but one that waits gets it at the next step boundary.
        waiting = _other_process(database, 60)
        started = time.monotonic()
        while waiting.poll() is None and time.monotonic() - started < 60:
            with warehouse.get_connection() as conn:  # a step of the run
                conn.execute("INSERT INTO staging.steps VALUES ('run')")
            time.sleep(0.2)
        assert waiting.wait(timeout=10) == 0, waiting.stderr.read()
        assert waiting.stdout.read().strip() == "written"
        with warehouse.get_connection() as conn:
            assert conn.execute("SELECT count(*) FROM staging.steps WHERE step = 'other process'").fetchone()[0] == 1
    finally:
        warehouse.teardown_after_execution(None)
    # After the run the file is closed, checkpointed and free.
    reader = duckdb.connect(str(database), read_only=True)
    assert reader.execute("SELECT count(*) FROM staging.steps WHERE step = 'run'").fetchone()[0] >= 1
    reader.close()
    assert not list(tmp_path.glob("*.waiting.*"))
