"""Lake mode fans raw ingestion out over processes (PATCHLEDGER_EXECUTOR=multiprocess) while the
`duckdb` pool keeps one warehouse writer at a time, and the result equals an in-process run."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import duckdb
import pytest
from dagster._core.definitions.reconstruct import ReconstructableJob

from pipelines.partitions import every_day

# The job's module, loaded by file in every step process.
JOB_FILE = Path(__file__).with_name("lake_jobs.py")
TARGETS = ("staging.patch_observations", "staging.vm_identity")

RAW_SCAN_STEPS = {"raw__patch_assessment_resources", "raw__patch_installation_resources",
                  "raw__patch_operations", "raw__la_update", "raw__la_update_summary",
                  "raw__la_update_run_progress"}


def _execute(monkeypatch, estate, database, lake, executor: str, tmp_path):
    for name, value in {"PATCHLEDGER_ESTATE": estate, "PATCHLEDGER_WAREHOUSE": database,
                        "PATCHLEDGER_REPORTS": tmp_path / "reports", "PATCHLEDGER_SOURCE": "files",
                        "PATCHLEDGER_LAKE": lake, "PATCHLEDGER_EXECUTOR": executor}.items():
        monkeypatch.setenv(name, str(value))  # the step processes inherit them
    monkeypatch.delenv("PATCHLEDGER_AS_OF", raising=False)
    home = tmp_path / f"dagster-{executor}"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home),
                              overrides={"concurrency": {"pools": {"default_limit": 1}}}) as instance:
        with dg.execute_job(ReconstructableJob.for_file(str(JOB_FILE), "ingest_and_observations"),
                            instance=instance, tags=every_day()) as result:
            assert result.success
            steps = {}
            for record in instance.all_logs(result.run_id):
                event = record.dagster_event
                if event is not None and event.event_type_value in ("STEP_START", "STEP_SUCCESS"):
                    steps.setdefault(event.step_key, []).append(record.timestamp)
            return steps


def _content(database) -> dict:
    with duckdb.connect(str(database), read_only=True) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        return {t: conn.execute(
            f"SELECT count(*), md5(coalesce(string_agg(t::VARCHAR, chr(10) ORDER BY t::VARCHAR), '')) "
            f"FROM {t} AS t").fetchall()[0] for t in (*TARGETS, "staging.assessment_runs")}


@pytest.fixture(scope="module")
def estate(tmp_path_factory):
    from pipelines.demo.generator import generate_estate

    root = tmp_path_factory.mktemp("lake-mp")
    generate_estate(root / "estate", vms=30, days=14, seed=11)
    return root / "estate"


def test_multiprocess_lake_run_equals_in_process(estate, tmp_path, monkeypatch):
    steps = _execute(monkeypatch, estate, tmp_path / "mp.duckdb", tmp_path / "mp-lake", "multiprocess", tmp_path)
    _execute(monkeypatch, estate, tmp_path / "ip.duckdb", tmp_path / "ip-lake", "in_process", tmp_path)
    assert _content(tmp_path / "mp.duckdb") == _content(tmp_path / "ip.duckdb")
    assert RAW_SCAN_STEPS <= steps.keys()
    # The pool admits one warehouse writer at a time: the steps in it never overlap.
    writers = sorted((start, end) for key, (start, end) in steps.items() if key not in RAW_SCAN_STEPS)
    assert len(writers) >= 3
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(writers, writers[1:], strict=False))


def test_multiprocess_needs_the_lake(monkeypatch):
    from pipelines.definitions import executor

    monkeypatch.delenv("PATCHLEDGER_LAKE", raising=False)
    monkeypatch.setenv("PATCHLEDGER_EXECUTOR", "multiprocess")
    with pytest.raises(ValueError, match="needs lake mode"):
        executor()
