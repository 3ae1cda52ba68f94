"""The evidence pack's trend chart (sql/report_trend.sql): the machines whose assessment was stale
at the end of each day, on planted machines whose answer is worked out by hand below."""

from datetime import date, datetime, timedelta

import duckdb

from pipelines.warehouse import read_sql

DAY = date(2026, 3, 1)


def _day(n: int) -> date:
    return DAY + timedelta(days=n - 1)


def _at(n: int, hour: int = 0, minute: int = 0, second: int = 0) -> str:
    return (datetime.combine(_day(n), datetime.min.time())
            + timedelta(hours=hour, minutes=minute, seconds=second)).isoformat() + "+00:00"


def test_stale_machines_per_day_counted_by_hand():
    conn = duckdb.connect()
    conn.execute("SET TimeZone = 'UTC'")
    conn.execute("CREATE SCHEMA marts; CREATE SCHEMA staging")
    conn.execute("CREATE TABLE marts.vm_inventory (vm_id VARCHAR)")
    conn.execute("INSERT INTO marts.vm_inventory VALUES ('vm-a'), ('vm-b'), ('vm-c'), ('vm-d')")
    conn.execute("CREATE TABLE staging.assessment_runs (vm_id VARCHAR, assessed_at TIMESTAMPTZ, succeeded BOOLEAN)")
    conn.executemany("INSERT INTO staging.assessment_runs VALUES (?, ?, ?)", [
        ("vm-a", _at(1, 10), True),           # fresh on days 1-3 (0, 1, 2 days old), stale on day 4
        ("vm-a", _at(5), True),               # midnight: belongs to day 5, fresh again on days 5-6
        ("vm-b", _at(2, 9), False),           # a failed assessment is no listing: stale every day
        ("vm-c", _at(3, 23, 59, 59), True),   # the last second of day 3: fresh from day 3 (stale on 1-2)
        ("vm-c", _at(4, 8), True),            # fresh through day 6 (4 + 2)
        ("vm-c", _at(4, 9), True),            # a second run the same day changes nothing
        ("vm-x", _at(1, 8), True),            # not in the inventory: never counted
    ])
    # vm-d has no assessment at all: stale every day.
    conn.execute("CREATE TABLE marts.compliance_daily (day DATE, grain VARCHAR, severity VARCHAR, "
                 "compliance_share DOUBLE, applicable_pairs INTEGER)")
    conn.executemany("INSERT INTO marts.compliance_daily VALUES (?, ?, ?, ?, ?)",
                     [(_day(n), grain, "Critical" if grain == "severity" else None, 0.5, 2)
                      for n in range(1, 8) for grain in ("fleet", "severity")])
    rows = conn.execute(read_sql("report_trend"), {"as_of": _day(6), "stale_after_days": 2}).fetchall()

    # Day by day, stale ones: 1: b, c, d; 2: b, c, d; 3: b, d; 4: a, b, d; 5: b, d; 6: b, d.
    # Day 7 is after the as-of date and not shown.
    assert [(day, stale) for day, _, _, _, stale in rows] == [
        (_day(1), 3), (_day(2), 3), (_day(3), 2), (_day(4), 3), (_day(5), 2), (_day(6), 2)]
    assert {severity for _, severity, _, _, _ in rows} == {"Critical"}
