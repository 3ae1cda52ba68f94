"""The remediation schedule: every actionable gap placed in a maintenance window occurrence.

A deterministic greedy placement, one machine at a time (the unit of a reboot), in this order:
ring of the machine's window (test and staging before production), then the machine's most
urgent gap (priority, then due date), then vm_id. Constraints:

- a machine is patched only in occurrences of its own window (tag `maintenance-window`),
  never on a blackout date of its environment;
- ring gating: a patch goes to a ring only after every placement of it in a lower ring has ended;
- capacity: at most `capacity_vms` machines per occurrence;
- redundancy: never all members of one role in the same occurrence (at most `max_role_share` of
  them, and always one fewer than all);
- duration: installs plus one reboot fit the occurrence; what does not fit moves to the next one;
- order within a machine: servicing stack updates first, then the authorization's deploy order
  and dependencies, then priority;
- one reboot per machine per occurrence (the last step).

Each row says why it was placed there; gaps that cannot meet their due date with the current
windows are marked, and gaps with no possible placement in the horizon are listed as such.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pandas as pd
from dateutil.rrule import rrulestr

SCHEDULE_COLUMNS = [
    "gap_id", "vm_id", "vm_name", "patch_key", "kb", "gap_type", "action", "window_id", "ring",
    "window_start", "window_end", "sequence", "sla_due", "status", "reason",
]
ACTIONS = {"authorized_missing": "install", "failed_reapply": "reinstall", "pending_reboot": "reboot"}


@dataclass(frozen=True)
class Occurrence:
    window_id: str
    ring: int
    start: datetime
    end: datetime
    capacity: int
    max_role_share: float


@dataclass
class Load:
    machines: int = 0
    roles: dict[str, int] = field(default_factory=lambda: defaultdict(int))


def window_occurrences(
    windows: pd.DataFrame, blackouts: pd.DataFrame, as_of: date, horizon_days: int
) -> dict[str, list[Occurrence]]:
    """Occurrences of every window after as_of within the horizon, blackout dates removed."""
    begin = datetime.combine(as_of + timedelta(days=1), time(), UTC)
    end = begin + timedelta(days=horizon_days)
    result: dict[str, list[Occurrence]] = {}
    for w in windows.sort_values("window_id").itertuples(index=False):
        zone = ZoneInfo(w.time_zone)
        local = w.start_time if isinstance(w.start_time, time) else time.fromisoformat(str(w.start_time))
        dtstart = datetime.combine(as_of - timedelta(days=1), local, zone)
        rule = rrulestr(w.rrule, dtstart=dtstart)
        dark = _blackout_days(blackouts, w.environment)
        found = []
        for local_start in rule.between(begin.astimezone(zone), end.astimezone(zone), inc=True):
            if local_start.date() in dark:
                continue
            start = local_start.astimezone(UTC)
            found.append(Occurrence(
                window_id=w.window_id, ring=int(w.ring), start=start,
                end=start + timedelta(minutes=int(w.duration_minutes)),
                capacity=int(w.capacity_vms), max_role_share=float(w.max_role_share),
            ))
        result[w.window_id] = found
    return result


def _blackout_days(blackouts: pd.DataFrame, environment: str) -> set[date]:
    days: set[date] = set()
    for b in blackouts.itertuples(index=False):
        if b.environment in ("*", environment):
            day = pd.Timestamp(b.starts_on).date()
            while day <= pd.Timestamp(b.ends_on).date():
                days.add(day)
                day += timedelta(days=1)
    return days


def role_limits(machines: pd.DataFrame) -> dict[str, int]:
    return machines.groupby("role").size().to_dict() if len(machines) else {}


def _allowed_in_role(size: int, share: float) -> int:
    """How many members of a role of `size` may share one occurrence: never all of them."""
    if size <= 1:
        return 1
    return max(1, min(size - 1, math.floor(share * size)))


def _patch_order(gaps: pd.DataFrame) -> pd.DataFrame:
    """Servicing stack first, then deploy order, then dependencies, then priority."""
    ordered = gaps.assign(
        _ssu=~gaps["title"].fillna("").str.contains("Servicing Stack", case=False),
        _order=gaps["deploy_order"].fillna(10**6),
        _priority=-gaps["priority"].fillna(0),
    ).sort_values(["_ssu", "_order", "_priority", "patch_key"], kind="mergesort")
    keys = list(ordered["patch_key"])
    deps = {
        patch: [str(d) for d in listed] if hasattr(listed, "__iter__") and not isinstance(listed, str) else []
        for patch, listed in zip(ordered["patch_key"], ordered["dependencies"], strict=True)
    }
    placed: list[str] = []
    visiting: set[str] = set()

    def visit(patch: str) -> None:  # depth-first: a dependency in the same batch goes first
        if patch in placed or patch in visiting:
            return
        visiting.add(patch)
        for dep in deps.get(patch, []):
            if dep in deps:
                visit(dep)
        visiting.discard(patch)
        placed.append(patch)

    for patch in keys:
        visit(patch)
    rank = {p: i for i, p in enumerate(placed)}
    return ordered.assign(_rank=ordered["patch_key"].map(rank)).sort_values("_rank", kind="mergesort")


def build_schedule(
    gaps: pd.DataFrame,
    machines: pd.DataFrame,
    windows: pd.DataFrame,
    blackouts: pd.DataFrame,
    as_of: date,
    horizon_days: int = 90,
    minutes_per_patch: float = 15.0,
    reboot_minutes: float = 15.0,
) -> pd.DataFrame:
    """Place every actionable gap; see the module docstring for the rules."""
    occurrences = window_occurrences(windows, blackouts, as_of, horizon_days)
    ring_of = dict(zip(windows["window_id"], windows["ring"].astype(int), strict=True))
    machine = machines.set_index("vm_id")
    role_size = role_limits(machines)
    load: dict[Occurrence, Load] = defaultdict(Load)
    patch_ready: dict[str, datetime] = {}  # patch -> end of its latest lower-ring placement
    rows: list[dict] = []

    actionable = gaps[gaps["gap_type"].isin(ACTIONS)].copy()
    if actionable.empty:
        return pd.DataFrame(columns=SCHEDULE_COLUMNS)
    actionable["window_id"] = actionable["vm_id"].map(machine["maintenance_window"])
    actionable["ring"] = actionable["window_id"].map(ring_of)
    urgency = actionable.groupby("vm_id").agg(
        top_priority=("priority", "max"), first_due=("sla_due", "min"), ring=("ring", "first")
    )
    urgency["ring"] = urgency["ring"].fillna(99)
    urgency = urgency.assign(neg_priority=-urgency["top_priority"].fillna(0))
    urgency = urgency.sort_values(["ring", "neg_priority", "first_due", "vm_id"], na_position="last",
                                  kind="mergesort")

    current_ring = None
    ring_placements: list[tuple[str, datetime]] = []
    gaps_of = {vm_id: group for vm_id, group in actionable.groupby("vm_id", sort=False)}
    for vm_id in urgency.index:
        vm = machine.loc[vm_id]
        vm_gaps = _patch_order(gaps_of[vm_id])
        ring = urgency.at[vm_id, "ring"]
        if ring != current_ring:  # lower rings are done: their placements now gate this ring
            for patch, finished in ring_placements:
                patch_ready[patch] = max(patch_ready.get(patch, finished), finished)
            ring_placements, current_ring = [], ring
        window_id = vm["maintenance_window"]
        if not isinstance(window_id, str) or window_id not in occurrences:
            reason = ("no maintenance window assigned (tag maintenance-window)"
                      if not isinstance(window_id, str) else f"unknown maintenance window {window_id!r}")
            rows += [_row(g, vm, None, None, "unplaceable", reason) for g in vm_gaps.itertuples()]
            continue
        pending = list(vm_gaps.itertuples())
        role = vm["role"]
        for occ in occurrences[window_id]:
            if not pending:
                break
            slot = load[occ]
            if slot.machines >= occ.capacity:
                continue
            if isinstance(role, str) and slot.roles[role] >= _allowed_in_role(role_size.get(role, 1), occ.max_role_share):
                continue
            budget = (occ.end - occ.start).total_seconds() / 60 - reboot_minutes
            batch, rest = [], []
            for gap in pending:
                ready = patch_ready.get(gap.patch_key)
                needs = 0 if gap.gap_type == "pending_reboot" else minutes_per_patch
                if (ready and ready > occ.start) or needs > budget:
                    rest.append(gap)
                    continue
                budget -= needs
                batch.append(gap)
            if not batch:
                continue
            slot.machines += 1
            if isinstance(role, str):
                slot.roles[role] += 1
            for sequence, gap in enumerate(batch, start=1):
                due = gap.sla_due
                late = due is not None and not pd.isna(due) and occ.start.date() > pd.Timestamp(due).date()
                gated = patch_ready.get(gap.patch_key)
                why = [f"first occurrence of {occ.window_id} (ring {occ.ring}) with room"]
                if gated:
                    why.append(f"after the lower rings finished this patch at {gated:%Y-%m-%d %H:%M} UTC")
                why.append(f"step {sequence} of {len(batch)}, reboot last")
                if late:
                    why.append(f"cannot meet its due date {pd.Timestamp(due).date()} with the current windows")
                rows.append(_row(gap, vm, occ, sequence, "cannot_meet_deadline" if late else "scheduled",
                                 "; ".join(why)))
                ring_placements.append((gap.patch_key, occ.end))
            pending = rest
        rows += [_row(g, vm, None, None, "unplaceable",
                      f"no occurrence of {window_id} within {horizon_days} days has room")
                 for g in pending]
    return pd.DataFrame(rows, columns=SCHEDULE_COLUMNS).sort_values(
        ["status", "window_start", "vm_id", "sequence", "gap_id"], na_position="last", kind="mergesort"
    ).reset_index(drop=True)


def _row(gap, vm, occ: Occurrence | None, sequence: int | None, status: str, reason: str) -> dict:
    return {
        "gap_id": gap.gap_id, "vm_id": gap.vm_id, "vm_name": vm["name"], "patch_key": gap.patch_key,
        "kb": gap.kb, "gap_type": gap.gap_type, "action": ACTIONS[gap.gap_type],
        "window_id": occ.window_id if occ else None, "ring": occ.ring if occ else None,
        "window_start": occ.start if occ else None, "window_end": occ.end if occ else None,
        "sequence": sequence, "sla_due": gap.sla_due, "status": status, "reason": reason,
    }
