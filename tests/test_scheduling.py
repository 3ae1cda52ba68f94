"""The remediation schedule never breaks a constraint and places every gap that can be placed."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import date, timedelta

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.scheduling import _allowed_in_role, build_schedule, window_occurrences

AS_OF = date(2026, 11, 27)
WINDOWS = pd.DataFrame([
    # window_id, rrule, start_time, duration, tz, ring, environment, capacity, role share
    ("test-tue", "FREQ=WEEKLY;BYDAY=TU", "02:00", 120, "UTC", 0, "test", 3, 1.0),
    ("stage-thu", "FREQ=WEEKLY;BYDAY=TH", "22:00", 90, "Europe/London", 1, "staging", 4, 0.5),
    ("prod-sat", "FREQ=WEEKLY;BYDAY=SA", "01:00", 60, "America/New_York", 2, "production", 2, 0.5),
    ("prod-crit", "FREQ=MONTHLY;BYDAY=+1SU,+3SU", "03:00", 240, "UTC", 3, "production", 2, 0.5),
], columns=["window_id", "rrule", "start_time", "duration_minutes", "time_zone", "ring",
            "environment", "capacity_vms", "max_role_share"])
NO_BLACKOUTS = pd.DataFrame(columns=["blackout_id", "starts_on", "ends_on", "environment", "reason"])


@st.composite
def estates(draw):
    n_machines = draw(st.integers(1, 14))
    machines = pd.DataFrame([{
        "vm_id": f"vm{i:02d}", "name": f"vm{i:02d}",
        "role": draw(st.sampled_from(["web", "sql", "dc", None])),
        "environment": draw(st.sampled_from(["production", "staging"])), "criticality": "high",
        "maintenance_window": draw(st.sampled_from([*WINDOWS["window_id"], None])),
    } for i in range(n_machines)])
    patches = [f"50{i:02d}" for i in range(6)]
    rows = []
    for vm in machines["vm_id"]:
        for patch in draw(st.lists(st.sampled_from(patches), unique=True, max_size=5)):
            gap_type = draw(st.sampled_from(["authorized_missing", "failed_reapply", "pending_reboot"]))
            rows.append({
                "gap_id": f"GAP-{vm}-{patch}", "vm_id": vm, "patch_key": patch, "kb": patch,
                "gap_type": gap_type,
                "title": "Servicing Stack Update" if patch == "5000" else f"Cumulative {patch}",
                "priority": draw(st.integers(0, 100)),
                "sla_due": AS_OF + timedelta(days=draw(st.integers(-5, 40))),
                "deploy_order": draw(st.sampled_from([None, 1, 2])),
                "dependencies": ["5001"] if patch == "5003" else [],
            })
    gaps = pd.DataFrame(rows, columns=["gap_id", "vm_id", "patch_key", "kb", "gap_type", "title",
                                       "priority", "sla_due", "deploy_order", "dependencies"])
    blackout_day = AS_OF + timedelta(days=draw(st.integers(1, 20)))
    blackouts = pd.DataFrame([{"blackout_id": "b1", "starts_on": blackout_day,
                               "ends_on": blackout_day + timedelta(days=2), "environment": "*",
                               "reason": "freeze"}])
    return machines, gaps, blackouts


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(estates())
def test_schedule_respects_every_constraint(estate):
    machines, gaps, blackouts = estate
    schedule = build_schedule(gaps, machines, WINDOWS, blackouts, AS_OF, horizon_days=60,
                              minutes_per_patch=15, reboot_minutes=15)
    # Every actionable gap appears exactly once.
    assert sorted(schedule["gap_id"]) == sorted(gaps["gap_id"])
    placed = schedule[schedule["status"] != "unplaceable"]
    window = WINDOWS.set_index("window_id")
    vm = machines.set_index("vm_id")
    dark = {blackouts.iloc[0]["starts_on"] + timedelta(days=d) for d in range(3)}
    occurrences = window_occurrences(WINDOWS, blackouts, AS_OF, 60)
    # A role's members are counted within one environment.
    role_size = Counter((e, r) for e, r in zip(machines["environment"], machines["role"], strict=True)
                        if isinstance(r, str))
    for row in placed.itertuples():
        assert row.window_id == vm.loc[row.vm_id, "maintenance_window"]
        starts = {o.start for o in occurrences[row.window_id]}
        assert row.window_start in starts
    for (window_id, start), group in placed.groupby(["window_id", "window_start"]):
        local_day = pd.Timestamp(start).tz_convert(window.loc[window_id, "time_zone"]).date()
        assert local_day not in dark
        machines_here = group["vm_id"].unique()
        assert len(machines_here) <= window.loc[window_id, "capacity_vms"]
        roles = Counter((vm.loc[m, "environment"], vm.loc[m, "role"]) for m in machines_here
                        if isinstance(vm.loc[m, "role"], str))
        for role, count in roles.items():
            assert count <= _allowed_in_role(role_size[role], window.loc[window_id, "max_role_share"])
            assert role_size[role] == 1 or count < role_size[role]
        for _, steps in group.groupby("vm_id"):
            installs = (steps["action"] != "reboot").sum()
            assert installs * 15 + 15 <= window.loc[window_id, "duration_minutes"]
            order = list(steps.sort_values("sequence")["patch_key"])
            assert sorted(steps["sequence"]) == list(range(1, len(steps) + 1))
            if "5001" in order and "5003" in order:
                assert order.index("5001") < order.index("5003")
    # Ring gating: a patch reaches a ring only after its lower-ring placements ended.
    ends = defaultdict(list)
    for row in placed.itertuples():
        ends[row.patch_key].append((row.ring, row.window_start, row.window_end))
    for runs in ends.values():
        for ring, start, _ in runs:
            lower = [end for r, _, end in runs if r < ring]
            assert not lower or start >= max(lower)
    # Nothing that can be placed is left out: unplaceable only for machines without a window,
    # or when every occurrence of the horizon was full.
    for row in schedule[schedule["status"] == "unplaceable"].itertuples():
        assert "no maintenance window" in row.reason or "has room" in row.reason


def test_everything_is_placed_when_windows_are_roomy():
    machines = pd.DataFrame([{"vm_id": f"vm{i}", "name": f"vm{i}", "role": "web",
                              "environment": "production", "criticality": "high",
                              "maintenance_window": "prod-sat"} for i in range(4)])
    roomy = WINDOWS.assign(capacity_vms=100, max_role_share=1.0, duration_minutes=600)
    gaps = pd.DataFrame([{"gap_id": f"G{i}", "vm_id": f"vm{i}", "patch_key": "5002", "kb": "5002",
                          "gap_type": "authorized_missing", "title": "CU", "priority": 50,
                          "sla_due": AS_OF + timedelta(days=30), "deploy_order": None,
                          "dependencies": []} for i in range(4)])
    schedule = build_schedule(gaps, machines, roomy, NO_BLACKOUTS, AS_OF)
    assert (schedule["status"] == "scheduled").all()
    # Four web servers, never all in one occurrence: three in the first Saturday, one the next.
    first, second = sorted(schedule["window_start"].unique())
    assert Counter(schedule["window_start"]) == {first: 3, second: 1}
    assert pd.Timestamp(first).tz_convert("America/New_York").strftime("%a %H:%M") == "Sat 01:00"


def test_a_gap_past_its_window_horizon_is_marked_late():
    machines = pd.DataFrame([{"vm_id": "vm1", "name": "vm1", "role": None, "environment": "production",
                              "criticality": "high", "maintenance_window": "prod-crit"}])
    gaps = pd.DataFrame([{"gap_id": "G1", "vm_id": "vm1", "patch_key": "5002", "kb": "5002",
                          "gap_type": "authorized_missing", "title": "CU", "priority": 90,
                          "sla_due": AS_OF, "deploy_order": None, "dependencies": []}])
    schedule = build_schedule(gaps, machines, WINDOWS, NO_BLACKOUTS, AS_OF)
    assert schedule.loc[0, "status"] == "cannot_meet_deadline"
    # First Sunday of December 2026 is the 6th.
    assert pd.Timestamp(schedule.loc[0, "window_start"]).date() == date(2026, 12, 6)
    assert "cannot meet its due date 2026-11-27" in schedule.loc[0, "reason"]


def test_steps_on_a_machine_follow_stack_deploy_order_dependencies_then_priority():
    machines = pd.DataFrame([{"vm_id": "vm1", "name": "vm1", "role": None, "environment": "test",
                              "criticality": "low", "maintenance_window": "test-tue"}])
    gaps = pd.DataFrame([
        # gap_id, patch, title, priority, deploy order, dependencies
        ("G1", "5003", "Cumulative", 90, None, ["5001"]),
        ("G2", "5001", "Cumulative", 10, None, []),
        ("G3", "5000", "2026-11 servicing stack update", 0, None, []),
        ("G4", "5002", "Cumulative", 50, 1, []),
    ], columns=["gap_id", "patch_key", "title", "priority", "deploy_order", "dependencies"]).assign(
        vm_id="vm1", kb=lambda d: d["patch_key"], gap_type="authorized_missing",
        sla_due=AS_OF + timedelta(days=30))
    schedule = build_schedule(gaps, machines, WINDOWS, NO_BLACKOUTS, AS_OF)
    assert list(schedule["patch_key"]) == ["5000", "5002", "5001", "5003"]
    assert list(schedule["sequence"]) == [1, 2, 3, 4]
    assert schedule["reason"].str.endswith("of 4, reboot last").all()


def test_occurrences_across_the_autumn_dst_change():
    # Sundays 03:00 Europe/London and Saturdays 01:00 America/New_York, as of 2026-10-16 for 22
    # days (2026-10-17 00:00 to 2026-11-08 00:00 UTC). London leaves BST on 2026-10-25, New York
    # leaves EDT on 2026-11-01; by hand:
    windows = WINDOWS[WINDOWS["window_id"].isin(["prod-sat"])].assign(duration_minutes=60)
    london = pd.DataFrame([("ldn-su", "FREQ=WEEKLY;BYDAY=SU", "03:00", 120, "Europe/London", 2, "production", 5, 0.5)],
                          columns=WINDOWS.columns)
    found = window_occurrences(pd.concat([windows, london]), NO_BLACKOUTS, date(2026, 10, 16), 22)
    starts = {w: [o.start.strftime("%Y-%m-%d %H:%M") for o in occ] for w, occ in found.items()}
    assert starts == {
        "ldn-su": ["2026-10-18 02:00", "2026-10-25 03:00", "2026-11-01 03:00"],  # BST, then GMT
        "prod-sat": ["2026-10-17 05:00", "2026-10-24 05:00", "2026-10-31 05:00",  # EDT (UTC-4)
                     "2026-11-07 06:00"],  # EST (UTC-5)
    }
