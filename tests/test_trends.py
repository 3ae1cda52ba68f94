"""Daily compliance and time to patch on a 3-day toy history, checked by hand (as of 2026-01-03).

vm-a (win-web, high, production, owner a@) and vm-b (lnx, low, test, owner b@).
  8000001 Critical:  vm-a missing d1, installed d3;  vm-b missing d1, failed d3
  8000002 Important: vm-a pending reboot d2, installed d3;  vm-b not applicable d1
  8000004 Moderate (superseded by 8000003): vm-b missing d1; 8000003 installed on vm-b d2
End of day        d1   d2   d3
applicable         3    5    5
installed          0    1    3
superseded_sat.    0    1    1
missing            3    2    0
failed             0    0    1
pending_reboot     0    1    0
share              0  0.4  0.8
Both machines have a full listing (staging.assessment_runs) every day; test_stale_machine_counts_as_unknown
stops vm-b's listings after day 1.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import duckdb

from assets.trends import CARRY, carry_before, state_changes
from pipelines.policy import load_policy, policy_rows
from pipelines.resources import connect_warehouse
from pipelines.warehouse import build_table, read_sql, replace_table

AS_OF = date(2026, 1, 3)
VM_A = "/subscriptions/s/resourcegroups/rg/providers/microsoft.compute/virtualmachines/vm-a"
VM_B = "/subscriptions/s/resourcegroups/rg/providers/microsoft.compute/virtualmachines/vm-b"


def at(day: int, hour: int = 10) -> datetime:
    return datetime(2026, 1, day, hour, tzinfo=UTC)


HISTORY = [
    (VM_A, "8000001", "missing", at(1)),
    (VM_B, "8000001", "missing", at(1)),
    (VM_B, "8000002", "not_applicable", at(1)),
    (VM_B, "8000004", "missing", at(1)),
    (VM_A, "8000002", "installed_pending_reboot", at(2)),
    (VM_B, "8000003", "installed", at(2)),
    (VM_A, "8000001", "missing", at(2)),
    (VM_A, "8000001", "installed", at(3)),
    (VM_A, "8000002", "installed", at(3, 12)),
    (VM_B, "8000001", "failed", at(3)),
]


# Full listings of each machine's patches (coverage): every day for both by default.
DAILY_LISTINGS = [(vm, day) for vm in (VM_A, VM_B) for day in (1, 2, 3)]


def build(path, listings=DAILY_LISTINGS, stale_after_days=2, history=HISTORY):
    conn = connect_warehouse(str(path))
    replace_table(conn, "staging.sla_policy", policy_rows(load_policy(None)))
    conn.execute(f"""
        CREATE TABLE marts.vm_inventory AS
        SELECT * FROM (VALUES
            ('{VM_A}', 'vm-a', 'high', 'win-web', 'production', 'a@contoso.com', false, false),
            ('{VM_B}', 'vm-b', 'low', 'lnx', 'test', 'b@contoso.com', false, false)
        ) AS t(vm_id, name, criticality, asset_category, environment, owner, internet_exposed, pci_scope)
    """)
    conn.execute("""
        CREATE TABLE marts.patch_catalog AS
        SELECT patch_key, patch_key AS kb, max_severity, TIMESTAMPTZ '2025-12-31 00:00:00+00' AS released_at
        FROM (VALUES ('8000001', 'Critical'), ('8000002', 'Important'), ('8000003', 'Moderate'),
                     ('8000004', 'Moderate')) AS t(patch_key, max_severity)
    """)
    conn.execute("""
        CREATE TABLE marts.patch_cves (patch_key VARCHAR, cve VARCHAR, in_kev BOOLEAN,
                                       kev_date_added DATE, kev_due_date DATE,
                                       ssvc_automatable BOOLEAN, ssvc_technical_impact VARCHAR)
    """)
    conn.execute("""
        CREATE TABLE marts.patch_fix_lineage AS
        SELECT * FROM (VALUES ('8000001', '8000001'), ('8000002', '8000002'), ('8000003', '8000004'),
                              ('8000004', '8000004')) AS t(kb, lineage_id)
    """)
    conn.execute("""
        CREATE TABLE marts.patch_supersedence_closure AS
        SELECT '8000003' AS kb, '8000004' AS superseded_kb, 1 AS depth, false AS in_cycle
    """)
    conn.execute("""
        CREATE TABLE marts.vm_patch_history (vm_id VARCHAR, event_seq BIGINT, patch_key VARCHAR,
            kb VARCHAR, msrc_severity VARCHAR, classification VARCHAR, state VARCHAR, source VARCHAR,
            observed_at TIMESTAMPTZ, run_id VARCHAR, source_file VARCHAR)
    """)
    # A row is (vm, patch_key, state, time[, source]): an assessment unless a source is given; a
    # KB's digits are its kb, a Linux <package>_<version> has none.
    conn.executemany(
        "INSERT INTO marts.vm_patch_history VALUES (?, ?, ?, ?, NULL, 'Security', ?, ?, ?, ?, 'f.json')",
        [[row[0], n, row[1], row[1] if row[1].isdigit() else None, row[2],
          row[4] if len(row) > 4 else "resource_graph_assessment", row[3], f"run-{n}"]
         for n, row in enumerate(history, 1)],
    )
    conn.execute("CREATE TABLE staging.assessment_runs (vm_id VARCHAR, assessed_at TIMESTAMPTZ, "
                 "source VARCHAR, succeeded BOOLEAN, source_file VARCHAR)")
    conn.executemany("INSERT INTO staging.assessment_runs VALUES (?, ?, 'resource_graph_assessment', true, 'f.json')",
                     [[vm, at(day, 2)] for vm, day in listings])
    build_table(conn, "staging.patch_severity")
    build_table(conn, "marts.patch_bod2604")
    carry_before(conn, None)  # a full build: nothing carried over
    state_changes(conn, AS_OF, None)
    for table in ("marts.compliance_daily", "marts.remediation_episodes", "marts.time_to_patch"):
        build_table(conn, table, params={"as_of": AS_OF, "from_day": None, "stale_after_days": stale_after_days,
                                         "pairs": None})
    return conn


COUNTS = ("machines, applicable_pairs, installed, superseded_satisfied, missing, failed, "
          "pending_reboot, compliance_share")


def fleet_rows(conn) -> list[tuple]:
    rows = conn.execute(
        f"SELECT day, {COUNTS} FROM marts.compliance_daily WHERE grain = 'fleet' ORDER BY day"
    ).fetchall()
    conn.close()
    return rows


def test_fleet_per_day(tmp_path):
    assert fleet_rows(build(tmp_path / "w.duckdb")) == [
        (date(2026, 1, 1), 2, 3, 0, 0, 3, 0, 0, 0.0),
        (date(2026, 1, 2), 2, 5, 1, 1, 2, 0, 1, 0.4),
        (date(2026, 1, 3), 2, 5, 3, 1, 0, 1, 0, 0.8),
    ]


def test_supersedence_holds_only_while_the_superseding_patch_is_installed(tmp_path):
    # vm-b: 8000004 fails on day 2 (after 8000003 is installed, so still satisfied) and 8000003
    # is rolled back (missing) on day 3, so 8000004 counts as failed again that day.
    history = [*HISTORY, (VM_B, "8000004", "failed", at(2, 12)), (VM_B, "8000003", "missing", at(3))]
    # Day 3: installed vm-a 8000001, 8000002; failed vm-b 8000001, 8000004; missing vm-b 8000003.
    assert fleet_rows(build(tmp_path / "w.duckdb", history=history)) == [
        (date(2026, 1, 1), 2, 3, 0, 0, 3, 0, 0, 0.0),
        (date(2026, 1, 2), 2, 5, 1, 1, 2, 0, 1, 0.4),
        (date(2026, 1, 3), 2, 5, 2, 0, 1, 2, 0, 0.4),
    ]


def test_newer_linux_package_version_satisfies_an_older_one(tmp_path):
    # vm-b: openssl 1.2-1 missing from day 1, 1.3-1 installed on day 3; curl 7.8-1 installed and
    # 7.9-1 missing on day 1, 7.10-1 installed on day 2 (7.10 is newer than 7.9 number by number,
    # though not as text; the older 7.8-1 satisfies nothing).
    history = [
        (VM_B, "openssl_1.2-1", "missing", at(1)),
        (VM_B, "curl_7.8-1", "installed", at(1)),
        (VM_B, "curl_7.9-1", "missing", at(1)),
        (VM_B, "curl_7.10-1", "installed", at(2)),
        (VM_B, "openssl_1.3-1", "installed", at(3)),
    ]
    # Day 1: installed curl 7.8; missing openssl 1.2, curl 7.9 -> 1/3.
    # Day 2: installed curl 7.8, 7.10; satisfied curl 7.9; missing openssl 1.2 -> 3/4.
    # Day 3: installed curl 7.8, 7.10, openssl 1.3; satisfied curl 7.9, openssl 1.2 -> 5/5.
    assert fleet_rows(build(tmp_path / "w.duckdb", history=history)) == [
        (date(2026, 1, 1), 1, 3, 1, 0, 2, 0, 0, 0.333333),
        (date(2026, 1, 2), 1, 4, 2, 1, 1, 0, 0, 0.75),
        (date(2026, 1, 3), 1, 5, 3, 2, 0, 0, 0, 1.0),
    ]


def test_failed_install_stays_failed_while_listed_missing(tmp_path):
    install = "resource_graph_installation"
    history = [
        # vm-a 8000001: the install fails on day 1, the assessments of days 2 and 3 list it missing.
        (VM_A, "8000001", "failed", at(1), install),
        (VM_A, "8000001", "missing", at(2)),
        (VM_A, "8000001", "missing", at(3)),
        # vm-b 8000001: fails on day 1, left out (not selected) by the run of day 2, missing on day 3.
        (VM_B, "8000001", "failed", at(1), install),
        (VM_B, "8000001", "not_selected", at(2), install),
        (VM_B, "8000001", "missing", at(3)),
        # vm-b 8000002: fails on day 1, not applicable on day 2 (that ends it), missing on day 3.
        (VM_B, "8000002", "failed", at(1), install),
        (VM_B, "8000002", "not_applicable", at(2)),
        (VM_B, "8000002", "missing", at(3)),
    ]
    # Day 1: three failed. Day 2: two failed (8000002 not applicable). Day 3: vm-a and vm-b
    # 8000001 failed, vm-b 8000002 missing.
    expected = [
        (date(2026, 1, 1), 2, 3, 0, 0, 0, 3, 0, 0.0),
        (date(2026, 1, 2), 2, 2, 0, 0, 0, 2, 0, 0.0),
        (date(2026, 1, 3), 2, 3, 0, 0, 1, 2, 0, 0.0),
    ]
    conn = build(tmp_path / "w.duckdb", history=history)
    assert conn.execute(f"SELECT day, {COUNTS} FROM marts.compliance_daily WHERE grain = 'fleet' "
                        "ORDER BY day").fetchall() == expected
    # A daily run from day 2 or 3 starts from what the days before left (the failed attempts):
    # summed up from the history, or kept from the build of the day before.
    for from_day, kept in [(date(2026, 1, 2), False), (date(2026, 1, 3), False),
                           (date(2026, 1, 2), True), (date(2026, 1, 3), True)]:
        conn.execute(f"DROP TABLE IF EXISTS {CARRY}")
        if kept:
            carry_before(conn, None)
            build_table(conn, CARRY, params={"as_of": from_day - timedelta(days=1), "from_day": None})
        carry_before(conn, from_day)
        conn.execute("DELETE FROM marts.compliance_daily WHERE day >= ?", [from_day])
        conn.execute(f"INSERT INTO marts.compliance_daily {read_sql('compliance_daily')}",
                     {"as_of": AS_OF, "from_day": from_day, "stale_after_days": 2})
        assert conn.execute(f"SELECT day, {COUNTS} FROM marts.compliance_daily WHERE grain = 'fleet' "
                            "ORDER BY day").fetchall() == expected, (from_day, kept)
    # The carry kept for day 1: vm-b 8000002 failed at its one instant, attempted then, never resolved.
    carry_before(conn, None)
    build_table(conn, CARRY, params={"as_of": date(2026, 1, 1), "from_day": None})
    assert conn.execute(f"SELECT state, observed_at, attempt_state, attempt_at, resolved_at, as_of FROM {CARRY} "
                        "WHERE vm_id = ? AND patch_key = '8000002'", [VM_B]).fetchall() == [
        ("failed", at(1), "failed", at(1), None, date(2026, 1, 1))]
    # Day 2 over the kept day 1: not applicable now (resolved), the failed attempt still the newest.
    carry_before(conn, date(2026, 1, 2))
    build_table(conn, CARRY, params={"as_of": date(2026, 1, 2), "from_day": date(2026, 1, 2)})
    assert conn.execute(f"SELECT state, observed_at, attempt_state, attempt_at, resolved_at, as_of FROM {CARRY} "
                        "WHERE vm_id = ? AND patch_key = '8000002'", [VM_B]).fetchall() == [
        ("not_applicable", at(2), "failed", at(1), at(2), date(2026, 1, 2))]
    conn.close()


def test_stale_machine_counts_as_unknown(tmp_path):
    # vm-b listed on day 1 only; stale after 1 day: fresh on days 1 and 2, stale on day 3.
    conn = build(tmp_path / "w.duckdb", listings=[(VM_A, 1), (VM_A, 2), (VM_A, 3), (VM_B, 1)],
                 stale_after_days=1)
    rows = conn.execute(
        f"SELECT day, {COUNTS}, unknown FROM marts.compliance_daily WHERE grain = 'fleet' ORDER BY day"
    ).fetchall()
    environments = conn.execute(
        "SELECT environment, installed, unknown, compliance_share FROM marts.compliance_daily "
        "WHERE grain = 'environment' AND day = DATE '2026-01-03' ORDER BY environment"
    ).fetchall()
    conn.close()
    # Day 3: vm-a 8000001 and 8000002 installed; vm-b's 8000001 (failed), 8000003 (installed) and
    # 8000004 (satisfied by 8000003) are unknown: 2 compliant of 5.
    assert rows == [
        (date(2026, 1, 1), 2, 3, 0, 0, 3, 0, 0, 0.0, 0),
        (date(2026, 1, 2), 2, 5, 1, 1, 2, 0, 1, 0.4, 0),
        (date(2026, 1, 3), 2, 5, 2, 0, 0, 0, 0, 0.4, 3),
    ]
    assert environments == [("production", 2, 0, 1.0), ("test", 0, 3, 0.0)]


def test_machine_never_listed_is_unknown(tmp_path):
    conn = build(tmp_path / "w.duckdb", listings=[(VM_A, 1), (VM_A, 2), (VM_A, 3)])
    rows = conn.execute(
        "SELECT day, installed, superseded_satisfied, missing, failed, unknown FROM marts.compliance_daily "
        "WHERE grain = 'fleet' ORDER BY day"
    ).fetchall()
    conn.close()
    # vm-b has 2 applicable pairs on day 1 (8000001, 8000004) and 3 from day 2, all unknown;
    # vm-a: 8000001 missing on days 1-2 (8000002 pending reboot on day 2), both installed on day 3.
    assert rows == [
        (date(2026, 1, 1), 0, 0, 1, 0, 2),
        (date(2026, 1, 2), 0, 0, 1, 0, 3),
        (date(2026, 1, 3), 2, 0, 0, 0, 3),
    ]


def test_breakdowns(tmp_path):
    conn = build(tmp_path / "w.duckdb")
    high = conn.execute(
        f"SELECT {COUNTS} FROM marts.compliance_daily "
        "WHERE grain = 'criticality' AND criticality = 'high' AND day = DATE '2026-01-02'"
    ).fetchall()
    critical = conn.execute(
        f"SELECT day, {COUNTS} FROM marts.compliance_daily "
        "WHERE grain = 'severity' AND severity = 'Critical' ORDER BY day"
    ).fetchall()
    owners = conn.execute(
        "SELECT owner, applicable_pairs FROM marts.compliance_daily "
        "WHERE grain = 'owner' AND day = DATE '2026-01-03' ORDER BY owner"
    ).fetchall()
    detail = conn.execute(
        "SELECT count(*), sum(applicable_pairs) FROM marts.compliance_daily "
        "WHERE grain = 'detail' AND day = DATE '2026-01-03'"
    ).fetchall()
    conn.close()
    # vm-a on day 2: 8000001 missing, 8000002 pending reboot.
    assert high == [(1, 2, 0, 0, 1, 0, 1, 0.0)]
    assert critical == [
        (date(2026, 1, 1), 2, 2, 0, 0, 2, 0, 0, 0.0),
        (date(2026, 1, 2), 2, 2, 0, 0, 2, 0, 0, 0.0),
        (date(2026, 1, 3), 2, 2, 1, 0, 0, 1, 0, 0.5),
    ]
    assert owners == [("a@contoso.com", 2), ("b@contoso.com", 3)]
    # Detail rows add up to the fleet.
    assert detail[0][1] == 5


def test_time_to_patch(tmp_path):
    conn = build(tmp_path / "w.duckdb")
    episodes = conn.execute(
        "SELECT vm_id = ? AS on_a, lineage_id, days_open, closing_patch_key "
        "FROM marts.remediation_episodes ORDER BY ALL", [VM_A]
    ).fetchall()
    overall = conn.execute(
        "SELECT episodes, closed_by_install, still_open, mean_days_to_patch, median_days_to_patch, "
        "p90_days_to_patch FROM marts.time_to_patch WHERE grain = 'overall'"
    ).fetchall()
    matrix = conn.execute(
        "SELECT severity, criticality, episodes, mean_days_to_patch FROM marts.time_to_patch "
        "WHERE grain = 'matrix' ORDER BY ALL"
    ).fetchall()
    month = conn.execute(
        "SELECT month, episodes FROM marts.time_to_patch WHERE grain = 'month'"
    ).fetchall()
    conn.close()
    assert episodes == [
        (False, "8000001", 2, None),  # vm-b failed on day 3: still open, 01-01 to 01-03
        (False, "8000004", 1, "8000003"),  # closed by the superseding patch on day 2
        (True, "8000001", 2, "8000001"),
        (True, "8000002", 1, "8000002"),  # pending reboot day 2, installed day 3
    ]
    # Closed by install: 2, 1, 1 days -> mean 1.333, median 1, p90 = 1 + 0.8 * (2 - 1) = 1.8.
    assert overall == [(4, 3, 1, 1.333, 1.0, 1.8)]
    assert matrix == [
        ("Critical", "high", 1, 2.0),
        ("Critical", "low", 1, None),
        ("Important", "high", 1, 1.0),
        ("Moderate", "low", 1, 1.0),
    ]
    assert month == [(date(2026, 1, 1), 3)]


# The trend's columns for the states of marts.vm_patch_state (see their comments).
TREND_COLUMN = {"installed": "installed", "superseded_satisfied": "superseded_satisfied", "missing": "missing",
                "not_selected": "missing", "failed": "failed", "installed_pending_reboot": "pending_reboot",
                "unknown_stale": "unknown"}


def test_trend_agrees_with_patch_state_every_day(demo_run):
    from assets.monitoring import vm_patch_state_at

    _, path, _, result = demo_run
    assert result.success
    conn = duckdb.connect(str(path), read_only=True)
    columns = list(dict.fromkeys(TREND_COLUMN.values()))
    trend = {row[0]: dict(zip(columns, row[1:], strict=True)) for row in conn.execute(
        f"SELECT day, {', '.join(columns)} FROM marts.compliance_daily WHERE grain = 'fleet' ORDER BY day"
    ).fetchall()}

    def by_column(states: list[tuple[str, str]]) -> dict[str, int]:
        counts = dict.fromkeys(columns, 0)
        for state, last_known in states:
            if last_known != "not_applicable":  # not applicable pairs are not in the trend
                counts[TREND_COLUMN[state]] += 1
        return counts

    # The last day: the mart itself, which exercises the three rules.
    last_day = max(trend)
    state = conn.execute("SELECT state, last_known_state, satisfied_by_kb, as_of FROM marts.vm_patch_state").fetchall()
    assert {row[3] for row in state} == {last_day}
    assert trend[last_day] == by_column([row[:2] for row in state])
    assert any(s == "superseded_satisfied" and "_" in (by or "") for s, _, by, _ in state)  # a Linux version
    assert ("failed", "missing") in {row[:2] for row in state}  # failed stays failed
    assert any(s == "not_selected" for s, *_ in state)
    # Every earlier day: the same state SQL for that date.
    for day in sorted(trend)[:-1]:
        past = vm_patch_state_at(conn, day)
        assert trend[day] == by_column(list(zip(past.state, past.last_known_state, strict=True))), day
    conn.close()
