"""Packs for a past date: rebuilt as of that date (equal to a run made then), never relabelled;
nothing dated after it leaks in; month-end packs as partitions, byte for byte."""

from __future__ import annotations

import csv
import json
import shutil
from datetime import UTC, date, datetime

import dagster as dg
import duckdb
import pytest

from assets.reports import month_end_pack
from pipelines.definitions import build_definitions, defs
from pipelines.ingest.azure import AzureResource
from pipelines.partitions import every_day
from pipelines.pastdate import PastDateError, rebuild_pack
from pipelines.reporting import write_reports
from pipelines.resources import RunSettings, WarehouseResource
from pipelines.sources.bulletins.resource import bulletin_resources
from pipelines.verification import verify_manifest

# The demo estate of conftest.demo_run runs 2026-10-29 .. 2026-11-27; Patch Tuesday is 10 November.
PAST = date(2026, 11, 5)


def rows(path):
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def past(demo_run, tmp_path_factory):
    """(root, live warehouse, the rebuilt pack folder, the reference warehouse and pack)."""
    estate, warehouse, _, result = demo_run
    assert result.success
    root = tmp_path_factory.mktemp("past")
    rebuild_pack(PAST, estate=estate, warehouse=warehouse, ledger_dir=root / "no-ledger",
                 out_root=root / "rebuilt")
    # The reference: a run made as of that date into a warehouse of its own.
    reference = root / "reference.duckdb"
    resources = {
        "warehouse": WarehouseResource(database=str(reference)),
        "run_settings": RunSettings(estate_dir=str(estate), reports_dir=str(root / "reference"),
                                    as_of=PAST.isoformat(), ledger_dir=str(root / "ref-ledger")),
        "azure": AzureResource(),
        **bulletin_resources(),
    }
    job = build_definitions(resources).resolve_job_def("full_refresh")
    assert job.execute_in_process(instance=dg.DagsterInstance.ephemeral(), tags=every_day()).success
    return root, warehouse, root / "rebuilt" / PAST.isoformat(), reference, root / "reference" / PAST.isoformat()


def test_a_past_date_pack_equals_a_run_made_as_of_that_date(past):
    _, _, rebuilt, _, reference = past
    names = sorted(str(p.relative_to(reference)) for p in reference.rglob("*") if p.is_file())
    assert names == sorted(str(p.relative_to(rebuilt)) for p in rebuilt.rglob("*") if p.is_file())
    for name in names:
        assert (rebuilt / name).read_bytes() == (reference / name).read_bytes(), name
    gaps = rows(rebuilt / "populations" / "gaps.csv")
    assert gaps and {g["as_of"] for g in gaps} == {"2026-11-05"}
    assert json.loads((rebuilt / "manifest.json").read_text())["as_of"] == "2026-11-05"
    assert verify_manifest(rebuilt) == []


def test_nothing_dated_after_the_date_enters_the_pack(past):
    _, _, rebuilt, reference, _ = past
    end = datetime(2026, 11, 6, tzinfo=UTC)
    conn = duckdb.connect(str(reference), read_only=True)
    try:
        # The estate holds November's Patch Tuesday: the same run knows those patches exist ...
        later = {r[0] for r in conn.execute(
            "SELECT DISTINCT patch_key FROM staging.msrc_fixes WHERE released_at >= ?", [end]).fetchall()}
        assert later
        catalog = {r[0] for r in conn.execute("SELECT patch_key FROM marts.patch_catalog").fetchall()}
        successors = {r[0] for r in conn.execute(
            "SELECT DISTINCT unnest(superseded_by) FROM marts.patch_catalog").fetchall()}
        notified = conn.execute("SELECT patch_key, released_at FROM ledger.notifications_sent").fetchall()
        observed_later = conn.execute(
            "SELECT count(*) FROM staging.patch_observations WHERE observed_at >= ?", [end]).fetchall()[0][0]
    finally:
        conn.close()
    # ... but neither its catalog nor its notifications do.
    assert catalog and not later & catalog and not later & successors
    assert notified and all(released < end for _, released in notified)
    assert not later & {key for key, _ in notified}
    # Observations, register events and approvals after the date are in the estate, not the pack.
    assert observed_later > 0
    assert all(datetime.fromisoformat(g["first_seen_at"]) < end
               for g in rows(rebuilt / "populations" / "gaps.csv"))
    assert all(datetime.fromisoformat(m["last_assessed_at"]) < end
               for m in rows(rebuilt / "populations" / "machines.csv") if m["last_assessed_at"])
    assert all(datetime.fromisoformat(e["occurred_at"]) < end
               for e in rows(rebuilt / "populations" / "authorization_events.csv"))
    assert not {g["patch_key"] for g in rows(rebuilt / "populations" / "gaps.csv")} & later


def test_the_live_warehouse_refuses_to_relabel(past, tmp_path):
    _, warehouse, _, _, _ = past
    with pytest.raises(PastDateError, match="marts are as of 2026-11-27, not 2026-11-05"):
        write_reports(str(warehouse), tmp_path, PAST)
    assert not (tmp_path / "2026-11-05").exists()


def test_verify_fails_a_pack_whose_figures_are_of_another_date(past, demo_run, tmp_path):
    live_pack = demo_run[2] / "2026-11-27"
    relabelled = tmp_path / "2026-11-05"
    shutil.copytree(live_pack, relabelled)
    manifest = json.loads((relabelled / "manifest.json").read_text())
    manifest.update(as_of="2026-11-05", report_id="PL-2026-11-05")
    (relabelled / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    problems = verify_manifest(relabelled)
    gaps = relabelled / "populations" / "gaps.csv"
    assert f"{gaps}: row 1: as_of 2026-11-27 is not the pack's date 2026-11-05 (the figures are of another date)" in problems
    assert any("authorization_events.csv" in p and "is after the pack's date 2026-11-05" in p
               for p in problems)


def test_the_monthly_schedule_runs_the_month_just_ended():
    schedule = defs().resolve_schedule_def("monthly_evidence_pack")
    context = dg.build_schedule_context(scheduled_execution_time=datetime(2026, 12, 1, 7, 0, tzinfo=UTC))
    requests = schedule.evaluate_tick(context).run_requests
    assert [r.partition_key for r in requests] == ["2026-11-01"]
    assert schedule.cron_schedule == "0 7 1 * *" and schedule.job_name == "month_end_evidence_pack"


def test_a_month_end_partition_is_that_day_and_reproducible_byte_for_byte(demo_run, tmp_path):
    estate, warehouse, _, _ = demo_run
    packs = []
    for name in ("first", "second"):
        resources = {
            "warehouse": WarehouseResource(database=str(warehouse)),
            "run_settings": RunSettings(estate_dir=str(estate), reports_dir=str(tmp_path / name),
                                        ledger_dir=str(tmp_path / "ledger")),
        }
        assert dg.materialize([month_end_pack], partition_key="2026-10-01", resources=resources,
                              instance=dg.DagsterInstance.ephemeral()).success
        packs.append(tmp_path / name / "2026-10-31")
    files = sorted(str(p.relative_to(packs[0])) for p in packs[0].rglob("*") if p.is_file())
    assert "manifest.json" in files and "populations/gaps.csv" in files
    for name in files:
        assert (packs[0] / name).read_bytes() == (packs[1] / name).read_bytes(), name
    assert json.loads((packs[0] / "manifest.json").read_text())["as_of"] == "2026-10-31"
    assert {m["as_of"] for m in rows(packs[0] / "populations" / "machines.csv")} == {"2026-10-31"}


def test_report_refuses_a_past_date_it_cannot_rebuild(demo_run, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from pipelines import cli

    _, warehouse, _, _ = demo_run
    for name in ("PATCHLEDGER_WAREHOUSE", "PATCHLEDGER_ESTATE"):
        monkeypatch.setenv(name, "")
    empty = tmp_path / "no-estate"
    empty.mkdir()
    outcome = CliRunner().invoke(cli.app, ["report", "--as-of", "2026-11-05", "--warehouse",
                                           str(warehouse), "--estate", str(empty), "--out",
                                           str(tmp_path / "out")])
    assert outcome.exit_code == 1
    assert "No estate at" in outcome.output and "to rebuild 2026-11-05 from" in outcome.output
    assert not (tmp_path / "out" / "2026-11-05").exists()


def test_patches_released_after_the_date_leave_the_cve_and_supersedence_marts(past):
    _, warehouse, _, reference, _ = past
    end = datetime(2026, 11, 6, tzinfo=UTC)
    conn = duckdb.connect(str(warehouse), read_only=True)
    try:
        # The estate holds November's Patch Tuesday, whose KBs supersede earlier ones.
        later = {r[0] for r in conn.execute(
            "SELECT patch_key FROM staging.msrc_fixes GROUP BY patch_key HAVING min(released_at) >= ?",
            [end]).fetchall()}
        later_successors = {r[0] for r in conn.execute(
            "SELECT DISTINCT kb FROM staging.msrc_fixes WHERE len(supersedes) > 0 AND kb IN "
            "(SELECT unnest($keys))", {"keys": sorted(later)}).fetchall()}
        live_cves = {r[0] for r in conn.execute("SELECT DISTINCT patch_key FROM marts.patch_cves").fetchall()}
    finally:
        conn.close()
    assert later and later_successors and later <= live_cves
    conn = duckdb.connect(str(reference), read_only=True)
    try:
        cves = {r[0] for r in conn.execute("SELECT DISTINCT patch_key FROM marts.patch_cves").fetchall()}
        successors = {r[0] for r in conn.execute("SELECT DISTINCT kb FROM marts.patch_supersedence").fetchall()}
    finally:
        conn.close()
    assert cves and successors
    assert not later & cves and not later_successors & successors


def test_a_month_before_the_first_observation_is_refused(demo_run, tmp_path):
    estate, warehouse, _, _ = demo_run
    resources = {
        "warehouse": WarehouseResource(database=str(warehouse)),
        "run_settings": RunSettings(estate_dir=str(estate), reports_dir=str(tmp_path / "packs"),
                                    ledger_dir=str(tmp_path / "ledger")),
    }
    # The estate starts on 2026-10-29: September has no data.
    result = dg.materialize([month_end_pack], partition_key="2026-09-01", resources=resources,
                            instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    error = failure.step_failure_data.error
    while error.cause is not None and "No observation" not in error.message:
        error = error.cause
    assert "No observation on or before 2026-09-30 in the warehouse" in error.message
    assert "a pack for 2026-09-30 would have no figures" in error.message
    assert not (tmp_path / "packs" / "2026-09-30").exists()


def test_in_lake_mode_a_past_date_pack_is_the_same_pack(past, demo_run, tmp_path, monkeypatch):
    """The live warehouse keeps raw and the large staging tables in a Parquet lake; the rebuild
    runs in a scratch file from the same estate and gives the file mode's pack, byte for byte."""
    estate = demo_run[0]
    rebuilt = past[2]
    warehouse = tmp_path / "lake-warehouse.duckdb"
    monkeypatch.setenv("PATCHLEDGER_LAKE", str(tmp_path / "lake"))
    monkeypatch.setenv("PATCHLEDGER_ESTATE", str(estate))
    monkeypatch.setenv("PATCHLEDGER_WAREHOUSE", str(warehouse))
    monkeypatch.setenv("PATCHLEDGER_REPORTS", str(tmp_path / "live-reports"))
    monkeypatch.setenv("PATCHLEDGER_LEDGER", str(tmp_path / "lake-ledger"))
    monkeypatch.delenv("PATCHLEDGER_AS_OF", raising=False)
    assert defs().resolve_job_def("full_refresh").execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), tags=every_day()).success
    assert (tmp_path / "lake" / "raw" / "patch_assessment_resources").is_dir()
    rebuild_pack(PAST, estate=estate, warehouse=warehouse, ledger_dir=tmp_path / "lake-ledger",
                 out_root=tmp_path / "packs")
    pack = tmp_path / "packs" / PAST.isoformat()
    names = sorted(str(p.relative_to(rebuilt)) for p in rebuilt.rglob("*") if p.is_file())
    assert names == sorted(str(p.relative_to(pack)) for p in pack.rglob("*") if p.is_file())
    for name in names:
        assert (pack / name).read_bytes() == (rebuilt / name).read_bytes(), name
    # The scratch run left the live lake as it was: no second version of the observations.
    assert len(list((tmp_path / "lake" / "staging" / "patch_observations").glob("v*"))) == 1
