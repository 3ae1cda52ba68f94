"""Time as a dimension: the same estate built day by day (each new day's files, then a late file
for an old day and a changed file) equals one build of every file, in every staging and marts
table, column by column; and each incremental build recomputes only the days its new or changed
files touch. In both storage modes (the DuckDB file, and the Parquet lake)."""

from __future__ import annotations

import csv
import shutil
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from test_incremental import _run as _run_targets

# Bookkeeping of the incremental builds themselves: sequence numbers, in lake mode the folder
# names, and which of two byte-identical (empty) files was read first differ by construction
# between a day-by-day and a one-run build.
# The ledger step's fingerprint covers the ledger's rows and files, which name the runs that appended them.
# The Resource Graph file figures are a cache of what each file read says, so a copy skipped as a
# duplicate of a file read on an earlier day is absent from it until the population step reads it.
BOOKKEEPING = {"staging.increment_log", "staging.increment_state", "staging.lake_days", "staging.scan_file_days",
               "staging.ledger_state", "staging.resource_graph_file_figures"}
# Wall-clock and run-id columns.
RUN_COLUMNS = {"ingest_run", "built_at", "loaded_at", "ingested_at", "dagster_run_id"}


# Everything the time chain feeds (and what it reads).
TARGETS = ("marts.vm_patch_history", "marts.remediation_episodes", "marts.time_to_patch", "marts.compliance_daily",
           "marts.vm_patch_state", "marts.compliance_gaps")


def _run(estate: Path, database: Path, tmp: Path, lake: bool):
    return _run_targets(estate, database, tmp, lake=lake, targets=TARGETS)


def _scan_files_of(estate: Path, day: str) -> list[Path]:
    return sorted(p for p in [*(estate / "azure").rglob(f"*{day}*"), *(estate / "log_analytics").rglob(f"*{day}*")]
                  if p.is_file())


def _set_aside(files: list[Path], estate: Path, aside: Path) -> list[tuple[Path, Path]]:
    moved = []
    for path in files:
        target = aside / path.relative_to(estate)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(path, target)
        moved.append((target, path))
    return moved


def _csv_days(path: Path) -> set[date]:
    """The UTC days of TimeGenerated in a Log Analytics Update export, read independently."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    # The portal's format, in UTC: "9/1/2026, 5:19:12.623 PM".
    return {datetime.strptime(r["TimeGenerated [UTC]"], "%m/%d/%Y, %I:%M:%S.%f %p").date() for r in rows}


@pytest.fixture(scope="module", params=["warehouse", "lake"])
def mode(request):
    return request.param


@pytest.fixture(scope="module")
def built(tmp_path_factory, mode):
    from pipelines.demo.generator import generate_estate

    lake = mode == "lake"
    root = tmp_path_factory.mktemp(f"day-by-day-{mode}")
    estate = root / "estate"
    summary = generate_estate(estate, vms=30, days=16, seed=13)
    last = summary.end
    days = [last.fromordinal(last.toordinal() - n).isoformat() for n in (15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3,
                                                                          2, 1, 0)]
    late = estate / "log_analytics" / f"Update_{days[4]}.csv"  # the fifth day's export arrives late
    changed = estate / "log_analytics" / f"Update_{days[8]}.csv"  # the ninth day's is re-exported
    aside = root / "aside"
    held_last = _set_aside(_scan_files_of(estate, days[-1]), estate, aside / "last")
    held_late = _set_aside([late], estate, aside / "late")
    database = root / "daily.duckdb"
    runs = {"first": _run(estate, database, root, lake=lake)[1]}  # days 1-15 without the late file
    folders_before = _folders(database) if lake else {}
    for target, original in held_last:
        shutil.move(target, original)
    runs["new day"] = _run(estate, database, root, lake=lake)[1]
    folders_new_day = _folders(database) if lake else {}
    for target, original in held_late:
        shutil.move(target, original)
    original_days = _csv_days(changed)
    lines = changed.read_text(encoding="utf-8-sig").splitlines(keepends=True)
    changed.write_text("".join(lines[: len(lines) // 2]), encoding="utf-8")
    runs["late and changed"] = _run(estate, database, root, lake=lake)[1]
    folders_late = _folders(database) if lake else {}
    full = root / "full.duckdb"
    runs["full"] = _run(estate, full, root, lake=lake)[1]
    expected_late_from = min(_csv_days(late) | original_days)
    return {"database": database, "full": full, "runs": runs, "days": days, "lake": lake,
            "expected_late_from": expected_late_from, "late_days": _csv_days(late),
            "folders": (folders_before, folders_new_day, folders_late)}


def _folders(database: Path) -> dict[str, str]:
    with duckdb.connect(str(database), read_only=True) as conn:
        return dict(conn.execute("SELECT day, folder FROM staging.lake_days "
                                 "WHERE table_name = 'staging.patch_observations'").fetchall())


def _tables(conn) -> dict[str, list[str]]:
    found = conn.execute(
        "SELECT table_schema || '.' || table_name FROM information_schema.tables "
        "WHERE table_schema IN ('staging', 'marts') ORDER BY 1").fetchall()
    return {t: [c for (c,) in conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema || '.' || table_name = ? "
        "ORDER BY ordinal_position", [t]).fetchall() if c not in RUN_COLUMNS]
        for (t,) in found if t not in BOOKKEEPING}


def test_day_by_day_equals_one_build(built):
    """Every staging and marts table, every column, as multisets of rows."""
    with duckdb.connect(str(built["database"]), read_only=True) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        conn.execute(f"ATTACH '{built['full']}' AS full_build (READ_ONLY)")
        daily = _tables(conn)
        conn.execute("USE full_build")
        one = _tables(conn)
        conn.execute("USE daily")
        assert daily.keys() == one.keys()
        assert {"marts.vm_patch_history", "marts.remediation_episodes", "marts.compliance_daily",
                "marts.vm_patch_state", "staging.patch_observations"} <= daily.keys()
        differing = {}
        for table, columns in daily.items():
            assert columns == one[table], table
            cols = ", ".join(f'"{c}"' for c in columns)
            a = f"SELECT {cols} FROM daily.{table}"
            b = f"SELECT {cols} FROM full_build.{table}"
            count = conn.execute(f"SELECT count(*) FROM (({a} EXCEPT ALL {b}) UNION ALL ({b} EXCEPT ALL {a}))"
                                 ).fetchall()[0][0]
            if count:
                differing[table] = count
        assert differing == {}
        assert conn.execute("SELECT count(*) FROM marts.vm_patch_history").fetchall()[0][0] > 1000


def test_a_new_day_recomputes_only_the_last_days(built):
    runs, days = built["runs"], built["days"]
    assert runs["first"]["staging/patch_observations"]["increment/reason"] == "first build"
    new_day = runs["new day"]
    observations = new_day["staging/patch_observations"]
    # The daily files of the new day hold the new day's runs and Resource Graph's copies of the
    # previous runs of machines not assessed since: those days are reread, never a week back,
    # but the copies change no row, so what reads the observations starts at the new day.
    assert days[-3] <= observations["increment/recomputed_from"] <= days[-1]
    assert observations["increment/changed_from"] == days[-1]
    for asset in ("marts/vm_patch_history", "marts/remediation_episodes"):
        assert new_day[asset]["increment/recomputed_from"] == days[-1], asset
        assert new_day[asset]["increment/reason"] == "new days", asset
    assert new_day["marts/vm_patch_state"]["increment/reason"] == "new days"
    # A patch first seen on the new day no longer makes the trend recount every day.
    assert new_day["marts/compliance_daily"]["trend/recomputed_from"] in days[-2:]
    # From the day after the previous run's date, it continues from the per-pair summary that run
    # kept; from an earlier day, from one summed up from the history.
    trend = new_day["marts/compliance_daily"]
    day_before = (date.fromisoformat(trend["trend/recomputed_from"]) - timedelta(days=1)).isoformat()
    kept = f"the summary kept for {day_before}"
    assert trend["trend/continued_from"] == (kept if day_before == days[-2] else f"the history up to {day_before}")
    with duckdb.connect(str(built["full"]), read_only=True) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        # The lineages whose state changed on the new day (in the one-run build; none in this
        # estate): only those are recomputed. The open episodes of the others only count one more
        # day, and equal the one-run build's all the same (test_day_by_day_equals_one_build).
        changed = conn.execute("SELECT count(DISTINCT (vm_id, lineage_id)) FROM staging.patch_state_changes "
                               "WHERE observed_at::DATE = ?", [days[-1]]).fetchall()[0][0]
        still_open = conn.execute("SELECT count(*) FROM marts.remediation_episodes WHERE closed_at IS NULL"
                                  ).fetchall()[0][0]
    assert new_day["marts/remediation_episodes"]["increment/lineages_recomputed"] == changed
    assert still_open > 0


def test_late_and_changed_files_recompute_from_the_earliest_day_they_touch(built):
    runs = built["runs"]["late and changed"]
    expected = built["expected_late_from"].isoformat()
    assert built["late_days"] == {date.fromisoformat(built["days"][4])}
    assert runs["staging/patch_observations"]["increment/changed_from"] == expected
    for asset in ("staging/patch_observations", "marts/vm_patch_history"):
        assert runs[asset]["increment/recomputed_from"] == expected, asset
        assert runs[asset]["increment/reason"] == "new or changed data for earlier days", asset
    # The trend's summary was kept for the previous date, not for the day before the late one.
    assert runs["marts/compliance_daily"]["trend/continued_from"].startswith("the history up to ")
    # The lineages whose state changes the late and changed files replaced are recomputed, not all.
    with duckdb.connect(str(built["full"]), read_only=True) as conn:
        lineages = conn.execute("SELECT count(DISTINCT (vm_id, lineage_id)) FROM marts.remediation_episodes"
                                ).fetchall()[0][0]
    assert 0 < runs["marts/remediation_episodes"]["increment/lineages_recomputed"] < lineages
    # The latest state keeps no facts of earlier days: it is recounted over every day.
    assert runs["marts/vm_patch_state"]["increment/recomputed_from"] == "all days"


def test_lake_rewrites_only_the_days_recomputed(built):
    if not built["lake"]:
        pytest.skip("lake mode only")
    before, new_day, late = built["folders"]
    days = built["days"]
    recomputed = built["runs"]["new day"]["staging/patch_observations"]["increment/recomputed_from"]
    assert sorted(new_day) == days  # one folder per day, every day
    assert {d: f for d, f in new_day.items() if d < recomputed} == {d: f for d, f in before.items() if d < recomputed}
    assert all(new_day[d] != before.get(d) for d in new_day if d >= recomputed)
    start = built["expected_late_from"].isoformat()
    assert {d: f for d, f in late.items() if d < start} == {d: f for d, f in new_day.items() if d < start}
    assert len({f.rsplit("/", 1)[0] for d, f in late.items() if d >= start}) == 1  # one new version
    for folder in set(before.values()) - set(late.values()):
        assert not Path(folder).exists()  # removed after the commit
