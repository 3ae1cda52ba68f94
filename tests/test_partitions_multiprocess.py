"""Partitions of raw ingestion on Dagster's multiprocess executor (lake mode): one run of three
days, the six raw scan assets in parallel processes, each reading only the files of those days
(and the undated ones); the rows per file are counted here from the files themselves."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import duckdb

from pipelines import partitions

JOB_FILE = Path(__file__).with_name("lake_jobs.py")
REPO = Path(__file__).resolve().parents[1]

# Runs the job `raw_scans` of lake_jobs.py for the days given on the multiprocess executor and
# prints its steps' start and end times and processes, and what it materialized, as JSON.
RUN = """
import json, sys
from datetime import date
import dagster as dg
from dagster._core.definitions.reconstruct import ReconstructableJob
from pipelines import partitions
job_file, first, last, home = sys.argv[1:]
tags = partitions.range_tags(date.fromisoformat(first), date.fromisoformat(last))
with dg.instance_for_test(temp_dir=home, overrides={"concurrency": {"pools": {"default_limit": 1}}}) as instance:
    with dg.execute_job(ReconstructableJob.for_file(job_file, "raw_scans"), instance=instance, tags=tags) as result:
        spans, pids = {}, {}
        for record in instance.all_logs(result.run_id):
            event = record.dagster_event
            if event is not None and event.step_key and event.event_type_value in ("STEP_START", "STEP_SUCCESS"):
                spans.setdefault(event.step_key, []).append(record.timestamp)
                pids[event.step_key] = event.pid
        materialized = sorted([e.asset_key.to_user_string(), e.partition] for e in (
            r.step_materialization_data.materialization for r in result.get_asset_materialization_events()))
        print(json.dumps({"success": result.success, "spans": spans, "pids": pids, "materialized": materialized}))
"""
RAW_STEPS = {"raw__patch_assessment_resources", "raw__patch_installation_resources", "raw__patch_operations",
             "raw__la_update", "raw__la_update_summary", "raw__la_update_run_progress"}


def _csv_rows(path: Path) -> int:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return sum(1 for _ in csv.DictReader(handle))


def test_raw_partitions_run_in_parallel_processes_and_read_their_days(tmp_path, monkeypatch):
    from pipelines.demo.generator import generate_estate

    estate = tmp_path / "estate"
    end = generate_estate(estate, vms=30, days=14, seed=3).end
    days = [end - timedelta(days=n) for n in (5, 4, 3)]  # neither the first nor the newest partition
    env = {**os.environ, "PATCHLEDGER_ESTATE": str(estate), "PATCHLEDGER_WAREHOUSE": str(tmp_path / "w.duckdb"),
           "PATCHLEDGER_REPORTS": str(tmp_path / "reports"), "PATCHLEDGER_SOURCE": "files",
           "PATCHLEDGER_LAKE": str(tmp_path / "lake"), "PATCHLEDGER_EXECUTOR": "multiprocess"}
    env.pop("PATCHLEDGER_AS_OF", None)
    (tmp_path / "home").mkdir()
    # In a process of its own, so that the code location loads in lake mode there too (the raw
    # steps' pool is decided when it loads).
    done = subprocess.run([sys.executable, "-c", RUN, str(JOB_FILE), days[0].isoformat(), days[-1].isoformat(),
                           str(tmp_path / "home")], env=env, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    run = json.loads(done.stdout.strip().splitlines()[-1])
    assert run["success"]
    spans, pids = run["spans"], run["pids"]
    materialized = {tuple(m) for m in run["materialized"]}
    assert spans.keys() == RAW_STEPS  # the job has only them
    assert len(set(pids.values())) == len(RAW_STEPS)  # each step in its own process
    ordered = sorted(spans.values())
    assert any(b_start < a_end for (_, a_end), (b_start, _) in zip(ordered, ordered[1:], strict=False))
    assert materialized == {(f"raw/{s.removeprefix('raw__')}", d.isoformat()) for s in RAW_STEPS for d in days}

    # Expected rows per source file, from the files: Resource Graph rows are the `data` array,
    # Log Analytics Update rows the CSV's records; files of other days are not read.
    in_days = lambda p: partitions.file_day(p.name) in days  # noqa: E731
    graph = estate / "azure" / "resource_graph"
    expected = {
        "raw.patch_assessment_resources": {
            f"azure/resource_graph/{p.name}": len(json.loads(p.read_text())["data"])
            for p in sorted(graph.glob("patchassessmentresources*.json")) if in_days(p)},
        "raw.patch_installation_resources": {
            f"azure/resource_graph/{p.name}": len(json.loads(p.read_text())["data"])
            for p in sorted(graph.glob("patchinstallationresources*.json")) if in_days(p)},
        "raw.la_update": {f"log_analytics/{p.name}": _csv_rows(p)
                          for p in sorted((estate / "log_analytics").glob("Update_*.csv")) if in_days(p)},
    }
    assert all(len(files) == 3 for files in expected.values())  # one file a day in the demo estate
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as conn:
        for table, files in expected.items():
            found = dict(conn.execute(f"SELECT source_file, count(*) FROM {table} GROUP BY ALL").fetchall())
            assert found == {name: rows for name, rows in files.items() if rows}, table  # an empty file gives none
        # Undated exports (spanning many days) are read by every run.
        assert conn.execute("SELECT list(DISTINCT source_file) FROM raw.la_update_summary").fetchall()[0][0] == [
            "log_analytics/UpdateSummary.json"]
        operations = {r[0] for r in conn.execute("SELECT DISTINCT source_file FROM raw.patch_operations").fetchall()}
    assert {partitions.file_day(Path(f).name) for f in operations} <= set(days)
