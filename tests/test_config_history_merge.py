"""marts.vm_config_history for a later evaluation date merges only the observations after the
previous one into the current intervals, and equals a full build; a changed earlier record
makes it build in full."""

from __future__ import annotations

from datetime import UTC, date, datetime

import duckdb
import pytest

from assets.inventory import CONFIG_HISTORY, _config_history

VM = "/subscriptions/s1/resourcegroups/g1/providers/microsoft.compute/virtualmachines/vm1"
_ATTRIBUTES = ("patch_mode", "assessment_mode", "automatic_updates_enabled", "hotpatching_enabled",
               "bypass_platform_safety_checks", "patch_mode_state", "environment", "criticality", "os_name",
               "os_version", "image_sku", "image_version")


def at(day: int, hour: int) -> datetime:
    return datetime(2026, 3, day, hour, tzinfo=UTC)


@pytest.fixture
def conn():
    c = duckdb.connect()
    c.execute("SET TimeZone = 'UTC'")
    for schema in ("raw", "staging", "marts"):
        c.execute(f"CREATE SCHEMA {schema}")
    c.execute("CREATE TABLE staging.vm_la_machines (la_key VARCHAR, vm_id VARCHAR)")
    c.execute("INSERT INTO staging.vm_la_machines VALUES (? || '|||vm1', ?)", [VM, VM])
    c.execute("CREATE TABLE raw.la_update_summary (TimeGenerated TIMESTAMPTZ, _ResourceId VARCHAR, "
              "ResourceId VARCHAR, VMUUID VARCHAR, SourceComputerId VARCHAR, Computer VARCHAR, "
              "WSUSServer VARCHAR, WindowsUpdateSetting VARCHAR, OsVersion VARCHAR)")
    columns = ", ".join(f"{a} VARCHAR" for a in _ATTRIBUTES)
    c.execute(f"CREATE TABLE staging.vm_snapshots (vm_id VARCHAR, captured_at TIMESTAMPTZ, "
              f"source_file VARCHAR, {columns})")
    return c


def summary(c, seen: datetime, wsus: str) -> None:
    c.execute("INSERT INTO raw.la_update_summary VALUES (?, ?, '', '', '', 'vm1', ?, 'Scheduled', '')",
              [seen, VM, wsus])


def snapshot(c, captured: datetime, patch_mode: str) -> None:
    c.execute("INSERT INTO staging.vm_snapshots (vm_id, captured_at, source_file, patch_mode, environment) "
              "VALUES (?, ?, ?, ?, 'production')", [VM, captured, f"s-{captured:%d}.json", patch_mode])


def intervals(c, attribute: str) -> list[tuple]:
    return c.execute(f"SELECT value, valid_from, valid_to, observations, as_of FROM {CONFIG_HISTORY} "
                     "WHERE attribute = ? ORDER BY valid_from", [attribute]).fetchall()


def rows(c) -> list[tuple]:
    return c.execute(f"SELECT * FROM {CONFIG_HISTORY} ORDER BY ALL").fetchall()


def test_a_later_day_extends_or_opens_intervals_like_a_full_build(conn):
    summary(conn, at(1, 10), "wsus-a")
    summary(conn, at(2, 10), "wsus-a")
    snapshot(conn, at(1, 6), "Manual")
    assert _config_history(conn, date(2026, 3, 2)) is None  # the first build is a full one
    assert intervals(conn, "wsus_server") == [("wsus-a", at(1, 10), None, 2, date(2026, 3, 2))]

    # Day 3: the update server changes, the patch mode does not; day 4 adds nothing.
    summary(conn, at(3, 10), "wsus-b")
    snapshot(conn, at(3, 6), "Manual")
    assert _config_history(conn, date(2026, 3, 4)) == date(2026, 3, 3)
    assert intervals(conn, "wsus_server") == [
        ("wsus-a", at(1, 10), at(3, 10), 2, date(2026, 3, 4)),
        ("wsus-b", at(3, 10), None, 1, date(2026, 3, 4)),
    ]
    assert intervals(conn, "windows_update_setting") == [("Scheduled", at(1, 10), None, 3, date(2026, 3, 4))]
    assert intervals(conn, "patch_mode") == [("Manual", at(1, 6), None, 2, date(2026, 3, 4))]
    # The untouched series (no new observation) keep their rows, at the new date.
    assert intervals(conn, "criticality") == [(None, at(1, 6), None, 2, date(2026, 3, 4))]
    merged = rows(conn)

    conn.execute("DELETE FROM staging.increment_snapshots")  # forget the basis: a full build
    assert _config_history(conn, date(2026, 3, 4)) is None
    assert rows(conn) == merged


def test_a_changed_earlier_record_builds_in_full(conn):
    summary(conn, at(1, 10), "wsus-a")
    assert _config_history(conn, date(2026, 3, 1)) is None
    conn.execute("UPDATE raw.la_update_summary SET WSUSServer = 'wsus-c'")
    summary(conn, at(2, 10), "wsus-c")
    assert _config_history(conn, date(2026, 3, 2)) is None
    assert intervals(conn, "wsus_server") == [("wsus-c", at(1, 10), None, 2, date(2026, 3, 2))]


def test_a_day_that_repeats_then_changes_a_value_is_not_merged_as_unchanged(conn):
    summary(conn, at(1, 10), "wsus-a")
    assert _config_history(conn, date(2026, 3, 1)) is None
    # Day 2: the same server at 08:00, another at 12:00, the first again at 18:00: three intervals
    # from day 1 (not one interval of four observations), as a full build gives.
    summary(conn, at(2, 8), "wsus-a")
    summary(conn, at(2, 12), "wsus-b")
    summary(conn, at(2, 18), "wsus-a")
    assert _config_history(conn, date(2026, 3, 2)) == date(2026, 3, 2)
    assert intervals(conn, "wsus_server") == [
        ("wsus-a", at(1, 10), at(2, 12), 2, date(2026, 3, 2)),
        ("wsus-b", at(2, 12), at(2, 18), 1, date(2026, 3, 2)),
        ("wsus-a", at(2, 18), None, 1, date(2026, 3, 2)),
    ]
    # Every record repeated the setting: its one current interval counts four observations.
    assert intervals(conn, "windows_update_setting") == [("Scheduled", at(1, 10), None, 4, date(2026, 3, 2))]
    merged = rows(conn)
    conn.execute("DELETE FROM staging.increment_snapshots")
    assert _config_history(conn, date(2026, 3, 2)) is None
    assert rows(conn) == merged
