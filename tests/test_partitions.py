"""Daily partitions (pipelines/partitions.py): which assets carry them, the schedules' and the
sensor's partitions, which files a partition reads, and what a run of old days recomputes."""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, timedelta

import dagster as dg
import duckdb
import pytest

from pipelines import partitions, sensors
from pipelines.definitions import defs
from pipelines.resources import WarehouseResource

PARTITIONED = {
    "raw/patch_assessment_resources", "raw/patch_installation_resources", "raw/patch_operations",
    "raw/la_update", "raw/la_update_summary", "raw/la_update_run_progress",
    "staging/assessment_runs", "staging/patch_observations", "marts/vm_patch_history",
    "marts/remediation_episodes", "marts/compliance_daily",
}


def test_the_assets_that_grow_with_time_are_daily_partitioned():
    graph = defs().resolve_asset_graph()
    found = {k.to_user_string(): graph.get(k) for k in graph.get_all_asset_keys()}
    daily = {name for name, node in found.items() if node.partitions_def == partitions.DAILY}
    assert daily == PARTITIONED
    for name in PARTITIONED:
        assert found[name].backfill_policy == dg.BackfillPolicy.single_run(), name
    # The latest-state marts are built once per run, after the partitioned ones.
    for name in ("marts/vm_patch_state", "marts/compliance_gaps", "marts/remediation_schedule"):
        assert found[name].partitions_def is None, name
    assert partitions.DAILY.timezone == "UTC"
    assert partitions.DAILY.start.date() == date(2026, 1, 1)
    # end_offset 0: the newest partition is the last complete UTC day.
    assert partitions.last_day() == datetime.now(UTC).date() - timedelta(days=1)


def test_checks_of_partitioned_assets_are_partitioned():
    graph = defs().resolve_asset_graph()
    checks = {k.name: graph.get_check_spec(k) for k in graph.asset_check_keys}
    assert checks["observations_have_canonical_state"].partitions_def == partitions.DAILY
    assert checks["episode_ids_unique"].partitions_def == partitions.DAILY
    assert checks["vm_patch_state_key_unique"].partitions_def is None


def test_jobs_are_partitioned_and_full_refresh_has_every_day():
    definitions = defs()
    for name in ("full_refresh", "daily_refresh", "bulletin_refresh", "scheduled_audit"):
        assert definitions.resolve_job_def(name).partitions_def == partitions.DAILY, name
    assert partitions.every_day() == {
        partitions.RANGE_START: "2026-01-01",
        partitions.RANGE_END: (datetime.now(UTC).date() - timedelta(days=1)).isoformat()}


@pytest.mark.parametrize(("name", "tick", "partition"), [
    ("daily_refresh", datetime(2026, 12, 2, 6, 0, tzinfo=UTC), "2026-12-01"),
    ("daily_refresh", datetime(2026, 11, 1, 6, 0, tzinfo=UTC), "2026-10-31"),
    ("weekly_patch_audit", datetime(2026, 11, 30, 7, 0, tzinfo=UTC), "2026-11-29"),
    ("patch_tuesday_bulletins", datetime(2026, 11, 10, 20, 0, tzinfo=UTC), "2026-11-09"),
])
def test_schedules_run_the_day_just_ended(name, tick, partition):
    definitions = defs()
    context = dg.build_schedule_context(scheduled_execution_time=tick,
                                        repository_def=definitions.get_repository_def())
    data = definitions.resolve_schedule_def(name).evaluate_tick(context)
    assert [r.partition_key for r in data.run_requests] == [partition]


def test_a_partition_reads_the_files_of_its_days():
    context = dg.build_asset_context(partition_key_range=dg.PartitionKeyRange("2026-11-10", "2026-11-12"))
    window = partitions.day_window(context)
    assert window == (date(2026, 11, 10), date(2026, 11, 12))
    names = {"azure/resource_graph/patchassessmentresources-2026-11-09.json": False,
             "azure/resource_graph/patchassessmentresources-2026-11-10.json": True,
             "log_analytics/Update_2026-11-12.csv": True,
             "log_analytics/Update_2026-11-13.csv": False,
             "log_analytics/UpdateSummary.json": True}  # undated: every run
    assert {n: partitions.in_window(n, window) for n in names} == names
    # A run of one partition (the daily schedule's) reads that day's files.
    one = dg.build_asset_context(partition_key="2026-11-10")
    assert partitions.day_window(one) == (date(2026, 11, 10), date(2026, 11, 10))
    assert partitions.requested(one) == (date(2026, 11, 10), False)
    # The first partition takes the older files, the newest the later ones.
    every = dg.build_asset_context(partition_key_range=dg.PartitionKeyRange(
        "2026-01-01", partitions.last_day().isoformat()))
    assert partitions.day_window(every) == (date.min, date.max)
    assert partitions.in_window("Update_2025-06-01.csv", partitions.day_window(every))


def test_what_a_run_of_partitions_asks_of_the_time_chain():
    old = dg.build_asset_context(partition_key_range=dg.PartitionKeyRange("2026-11-10", "2026-11-10"))
    assert partitions.requested(old) == (date(2026, 11, 10), False)
    every = dg.build_asset_context(partition_key_range=dg.PartitionKeyRange(
        "2026-01-01", partitions.last_day().isoformat()))
    assert partitions.requested(every) == (date(2026, 1, 1), True)


def test_range_tags_are_clamped_to_the_partitions():
    last = partitions.last_day()
    assert partitions.range_tags(date(2025, 3, 1), last + timedelta(days=30)) == partitions.every_day()
    assert partitions.range_tags(date(2026, 11, 3), date(2026, 11, 1)) == {
        partitions.RANGE_START: "2026-11-03", partitions.RANGE_END: "2026-11-03"}


def _sensor_tick(run_settings, cursor):
    """One evaluation of the estate sensor: its result and the cursor it leaves."""
    context = dg.build_sensor_context(cursor=cursor, instance=dg.DagsterInstance.ephemeral(),
                                      resources={"run_settings": run_settings})
    return sensors.estate_changed(context), context.cursor


def test_estate_sensor_runs_from_the_earliest_day_written(tmp_path):
    folder = tmp_path / "estate" / "log_analytics"
    folder.mkdir(parents=True)
    for day in ("2026-11-20", "2026-11-21", "2026-11-22"):
        (folder / f"Update_{day}.csv").write_text("x\n")
    run_settings = sensors.RunSettings(estate_dir=str(tmp_path / "estate"))

    def tick(cursor):
        return _sensor_tick(run_settings, cursor)

    first, cursor = tick(None)
    assert first.tags[partitions.RANGE_START] == "2026-01-01"  # nothing known yet: every day
    skipped, _ = tick(cursor)
    assert isinstance(skipped, dg.SkipReason)
    # A late export for 2026-11-21 rewritten after the last tick: from that day to the newest.
    late = folder / "Update_2026-11-21.csv"
    late.write_text("x\ny\n")
    newer = max(p.stat().st_mtime_ns for p in folder.iterdir()) + 10**9
    os.utime(late, ns=(newer, newer))
    request, _ = tick(cursor)
    assert request.tags == {partitions.RANGE_START: "2026-11-21", partitions.RANGE_END: partitions.last_day().isoformat()}


def test_estate_sensor_stops_at_the_as_of_date(tmp_path):
    folder = tmp_path / "estate" / "log_analytics"
    folder.mkdir(parents=True)
    for day in ("2026-11-20", "2026-11-21"):
        (folder / f"Update_{day}.csv").write_text("x\n")
    run_settings = sensors.RunSettings(estate_dir=str(tmp_path / "estate"), as_of="2026-11-21")

    def tick(cursor):
        return _sensor_tick(run_settings, cursor)

    first, cursor = tick(None)
    assert first.tags == {partitions.RANGE_START: "2026-01-01", partitions.RANGE_END: "2026-11-21"}
    # A file dated after the as-of date starts no run for it.
    after = folder / "Update_2026-11-23.csv"
    after.write_text("x\n")
    newer = max(p.stat().st_mtime_ns for p in folder.iterdir()) + 10**9
    os.utime(after, ns=(newer, newer))
    skipped, cursor = tick(cursor)
    assert isinstance(skipped, dg.SkipReason) and "2026-11-21" in skipped.skip_message
    # A late file for 2026-11-20 runs that day to the as-of date, not to the newest partition.
    late = folder / "Update_2026-11-20.csv"
    late.write_text("x\ny\n")
    os.utime(late, ns=(newer + 10**9, newer + 10**9))
    request, _ = tick(cursor)
    assert request.tags == {partitions.RANGE_START: "2026-11-20", partitions.RANGE_END: "2026-11-21"}


@pytest.fixture(scope="module")
def estate(tmp_path_factory):
    from pipelines.demo.generator import generate_estate

    root = tmp_path_factory.mktemp("partitions")
    summary = generate_estate(root / "estate", vms=30, days=14, seed=5)
    return root, summary.end


def _materialize(root, tags):
    from test_incremental import _run

    targets = ("marts.compliance_daily", "marts.remediation_episodes")
    return _run(root / "estate", root / "w.duckdb", root, targets=targets, tags=tags)[1]


def _tables(database) -> dict:
    with duckdb.connect(str(database), read_only=True) as conn:
        return {t: conn.execute(f"SELECT count(*), sum(hash(t)) FROM {t} AS t").fetchall()[0]
                for t in ("staging.patch_observations", "marts.vm_patch_history", "marts.remediation_episodes",
                          "marts.compliance_daily")}


def test_a_rerun_of_an_old_day_recomputes_it_and_the_days_after(estate):
    from pipelines.sources.scan_raw import touched_partitions

    root, end = estate
    tags, why = touched_partitions(root / "estate", root / "w.duckdb")
    start = end - timedelta(days=13)  # 14 days of data: the first file is dated 13 days before the last
    # Up to the last day of the data (the default evaluation date), not to the clock's yesterday.
    assert (tags, why) == (partitions.range_tags(start, end), f"first run: every day of the data up to {end}")
    first = _materialize(root, tags)
    assert first["marts/vm_patch_history"]["increment/reason"] == "first build"
    # Every partition of the range is recorded, each day of it once.
    days = [(start + timedelta(days=n)).isoformat() for n in range(14)]
    assert first["staging/patch_observations"]["partitions"] == days
    built = _tables(root / "w.duckdb")

    # Nothing changed: `patchledger run` would run the newest day of the data only.
    tags, why = touched_partitions(root / "estate", root / "w.duckdb")
    assert (tags, why) == (partitions.range_tags(end, end), f"no new or changed scan file dated up to {end}: that day")

    # A rerun of an old day (end - 3) recomputes it and every later day, and nothing before it.
    old = end - timedelta(days=3)
    rerun = _materialize(root, partitions.range_tags(old, old))
    assert rerun["marts/vm_patch_history"]["partitions"] == [old.isoformat()]
    for name in ("staging/patch_observations", "marts/vm_patch_history", "marts/remediation_episodes"):
        assert rerun[name]["increment/recomputed_from"] == old.isoformat(), name
    for name in ("staging/patch_observations", "marts/vm_patch_history"):  # no file changed: the request
        assert rerun[name]["increment/reason"] == f"the partitions from {old} were requested again"
    # The episodes follow the history, which was recomputed from that day.
    assert rerun["marts/remediation_episodes"]["increment/reason"] == "new or changed data for earlier days"
    assert rerun["marts/compliance_daily"]["trend/recomputed_from"] == old.isoformat()
    assert _tables(root / "w.duckdb") == built  # the same inputs give the same rows

    # A changed file dated `old`: `patchledger run` runs from that day.
    changed = root / "estate" / "log_analytics" / f"Update_{old}.csv"
    changed.write_bytes(changed.read_bytes() + b"\n")
    tags, why = touched_partitions(root / "estate", root / "w.duckdb")
    assert tags == partitions.range_tags(old, end)
    assert why == f"1 new or changed scan file(s) from {old}"


def test_touched_partitions_end_on_the_as_of_date(tmp_path):
    """Planted file dates: the range never passes the as-of date (given, or the newest dated scan
    file), and a day without a file inside it is part of the range."""
    from pipelines.sources.scan_raw import touched_partitions

    estate, warehouse = tmp_path / "estate", tmp_path / "w.duckdb"
    la, ops = estate / "log_analytics", estate / "azure" / "patch_operations"
    la.mkdir(parents=True)
    ops.mkdir(parents=True)
    for name in ("Update_2026-11-20.csv", "Update_2026-11-21.csv", "Update_2026-11-23.csv", "UpdateSummary.json"):
        (la / name).write_text(name)
    (ops / "assess-2026-11-25.json").write_text("{}")
    tags = partitions.range_tags
    # First run, no as-of: 11-20 (first dated file) to 11-25 (newest), the empty 11-22 and 11-24 within.
    assert touched_partitions(estate, warehouse) == (
        tags(date(2026, 11, 20), date(2026, 11, 25)), "first run: every day of the data up to 2026-11-25")
    assert tags(date(2026, 11, 20), date(2026, 11, 25)) == {
        partitions.RANGE_START: "2026-11-20", partitions.RANGE_END: "2026-11-25"}
    # As of 11-22: nothing after it, although files are dated 11-23 and 11-25.
    assert touched_partitions(estate, warehouse, date(2026, 11, 22))[0] == {
        partitions.RANGE_START: "2026-11-20", partitions.RANGE_END: "2026-11-22"}
    # As of a day before every file: that day alone.
    assert touched_partitions(estate, warehouse, date(2026, 11, 10))[0] == {
        partitions.RANGE_START: "2026-11-10", partitions.RANGE_END: "2026-11-10"}

    # Files 11-20 and 11-21 held; 11-23 and 11-25 new (and a copy of 11-20 under a new name).
    with duckdb.connect(str(warehouse)) as conn:
        conn.execute("CREATE SCHEMA raw")
        conn.execute("CREATE TABLE raw.ingested_files (source_file VARCHAR, source_sha256 VARCHAR, raw_table VARCHAR)")
        for name in ("Update_2026-11-20.csv", "Update_2026-11-21.csv"):
            conn.execute("INSERT INTO raw.ingested_files VALUES (?, sha256(?), 'raw.la_update')",
                         [f"log_analytics/{name}", name])
    (la / "Update_2026-11-24.csv").write_text("Update_2026-11-20.csv")  # same bytes as a held file
    assert touched_partitions(estate, warehouse) == (
        tags(date(2026, 11, 23), date(2026, 11, 25)), "2 new or changed scan file(s) from 2026-11-23")
    # As of 11-22: the new files are all later, so the run is of 11-22 alone.
    assert touched_partitions(estate, warehouse, date(2026, 11, 22)) == (
        tags(date(2026, 11, 22), date(2026, 11, 22)), "no new or changed scan file dated up to 2026-11-22: that day")
    # As of 11-23: 11-23 only; 11-25 waits for a later as-of date.
    assert touched_partitions(estate, warehouse, date(2026, 11, 23))[0] == {
        partitions.RANGE_START: "2026-11-23", partitions.RANGE_END: "2026-11-23"}


def test_a_range_run_records_the_checks_of_each_day(tmp_path):
    """Dagster 1.13 stores a check result of a range run without a partition and leaves each
    day's planned evaluation open: `partitions.check_results` records it on each day instead."""
    from assets.monitoring import observations_have_canonical_state

    warehouse = WarehouseResource(database=str(tmp_path / "w.duckdb"))

    @dg.asset(key=["staging", "patch_observations"], partitions_def=partitions.DAILY,
              backfill_policy=partitions.SINGLE_RUN)
    def planted(warehouse: WarehouseResource) -> None:
        with warehouse.get_connection() as conn:  # one row a day, a non-canonical state on 11-11
            conn.execute("CREATE OR REPLACE TABLE staging.patch_observations AS SELECT * FROM (VALUES "
                         "(TIMESTAMPTZ '2026-11-10 08:00:00+00', 'missing'), "
                         "(TIMESTAMPTZ '2026-11-11 08:00:00+00', 'Wibble'), "
                         "(TIMESTAMPTZ '2026-11-12 08:00:00+00', 'installed')) AS t(observed_at, state)")

    instance = dg.DagsterInstance.ephemeral()
    key = dg.AssetCheckKey(dg.AssetKey(["staging", "patch_observations"]), "observations_have_canonical_state")

    def records():
        return sorted((r.partition, r.status.value) for r in
                      instance.event_log_storage.get_asset_check_execution_history(key, limit=50))

    run = dg.materialize([planted, observations_have_canonical_state], instance=instance,
                         resources={"warehouse": warehouse}, raise_on_error=False,
                         tags=partitions.range_tags(date(2026, 11, 10), date(2026, 11, 12)))
    # The run's days hold one non-canonical row: the check fails, on each of its three days, and
    # no day is left planned (nor an evaluation without a day).
    assert records() == [("2026-11-10", "FAILED"), ("2026-11-11", "FAILED"), ("2026-11-12", "FAILED")]
    (evaluation, *_) = run.get_asset_check_evaluations()
    assert evaluation.metadata["non_canonical_rows"].value == 1
    assert {e.partition for e in run.get_asset_check_evaluations()} == {"2026-11-10", "2026-11-11", "2026-11-12"}
    # A run of 11-10 alone: that day's rows are canonical; the day's newest evaluation passes.
    dg.materialize([planted, observations_have_canonical_state], instance=instance,
                   resources={"warehouse": warehouse}, partition_key="2026-11-10")
    assert records() == [("2026-11-10", "FAILED"), ("2026-11-10", "SUCCEEDED"), ("2026-11-11", "FAILED"),
                         ("2026-11-12", "FAILED")]
