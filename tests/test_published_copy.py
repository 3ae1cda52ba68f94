"""Analysts never block a run: each successful run publishes a read-only copy of the warehouse
beside it, and a reader holding that copy open across the next run neither stops the run nor
sees a half-written state. Packs land beside their warehouse.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
CLI = REPO / ".venv" / "bin" / "patchledger"


def run(root: Path, *args: str) -> subprocess.CompletedProcess:
    home = root / "dagster_home"
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PATCHLEDGER_", "AZURE_"))}
    # A run that had to wait for a reader would fail after one second.
    env.update(DAGSTER_HOME=str(home), PATCHLEDGER_SOURCE="files", PATCHLEDGER_LOCK_TIMEOUT_SECONDS="1")
    return subprocess.run([str(CLI), *args], env=env, capture_output=True, text=True, timeout=900, cwd=root)


def as_of_seen_by_a_new_reader(path: Path) -> str:
    """What a fresh analyst session (another process) reads from the copy."""
    code = ("import duckdb, sys; c = duckdb.connect(sys.argv[1], read_only=True); "
            "print(c.execute('SELECT max(as_of) FROM marts.compliance_gaps').fetchone()[0])")
    return subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True,
                          check=True).stdout.strip()


def test_a_reader_of_the_published_copy_never_blocks_a_run(tmp_path):
    from pipelines.demo.generator import generate_estate

    estate, warehouse = tmp_path / "estate", tmp_path / "one" / "warehouse.duckdb"
    generate_estate(estate, vms=30, days=14, seed=5)
    done = run(tmp_path, "run", "--estate", str(estate), "--warehouse", str(warehouse))
    assert done.returncode == 0, done.stderr[-3000:]
    published = warehouse.with_name("warehouse-read.duckdb")
    assert published.is_file()
    # The copy holds what the live file holds, table by table.
    live = duckdb.connect(str(warehouse), read_only=True)
    tables = live.execute("SELECT schema_name || '.' || table_name FROM duckdb_tables() "
                          "WHERE schema_name IN ('marts', 'ledger') ORDER BY 1").fetchall()
    counts = {t: live.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for (t,) in tables}
    live.close()
    assert len(counts) > 20

    reader = duckdb.connect(str(published), read_only=True)  # an analyst's notebook, left open
    try:
        assert {t: reader.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in counts} == counts
        first_as_of = reader.execute("SELECT max(as_of) FROM marts.compliance_gaps").fetchone()[0]
        earlier = str(first_as_of.fromordinal(first_as_of.toordinal() - 3))
        started = time.monotonic()
        done = run(tmp_path, "run", "--estate", str(estate), "--warehouse", str(warehouse), "--as-of", earlier)
        assert done.returncode == 0, done.stderr[-3000:]
        assert "locked" not in done.stderr
        # The open session still reads the snapshot it opened, whole.
        assert reader.execute("SELECT max(as_of) FROM marts.compliance_gaps").fetchone()[0] == first_as_of
        assert reader.execute("SELECT count(*) FROM marts.vm_inventory").fetchone()[0] == counts["marts.vm_inventory"]
    finally:
        reader.close()
    assert time.monotonic() - started < 900
    # A new session sees the new run.
    assert as_of_seen_by_a_new_reader(published) == earlier
    assert not list(published.parent.glob(".*partial"))


def test_packs_land_beside_their_warehouse(tmp_path):
    from pipelines.demo.generator import generate_estate

    estate = tmp_path / "estate"
    generate_estate(estate, vms=30, days=14, seed=3)
    for name in ("one", "two"):
        done = run(tmp_path, "run", "--estate", str(estate), "--warehouse", str(tmp_path / name / "warehouse.duckdb"))
        assert done.returncode == 0, done.stderr[-3000:]
    packs = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.glob("*/reports/*/manifest.json"))
    assert len(packs) == 2 and packs[0].startswith("one/reports/") and packs[1].startswith("two/reports/")
    assert not (tmp_path / "reports").exists()
    # --out still says where, and the pack written there verifies against its warehouse.
    done = run(tmp_path, "report", "--warehouse", str(tmp_path / "one" / "warehouse.duckdb"), "--out", str(tmp_path / "elsewhere"))
    assert done.returncode == 0, done.stderr[-3000:]
    (folder,) = (tmp_path / "elsewhere").iterdir()
    done = run(tmp_path, "verify", str(folder), "--warehouse", str(tmp_path / "one" / "warehouse.duckdb"))
    assert done.returncode == 0, done.stdout + done.stderr
