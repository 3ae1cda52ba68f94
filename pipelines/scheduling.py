"""The remediation schedule: every actionable gap placed in a maintenance window occurrence.

A deterministic greedy placement, one machine at a time (the unit of a reboot), in this order:
ring of the machine's window (test and staging before production), then the machine's most
urgent gap (priority, then due date), then vm_id. Constraints:

- a machine is patched only in occurrences of its own window (marts.vm_maintenance_windows: the
  InGuestPatch maintenance configuration it is assigned to, when Azure Update Manager really runs,
  else the register window its tag `maintenance-window` names), never on a blackout date of the
  window's environment;
- ring gating: a patch goes to a ring only after every placement of it in a lower ring has ended;
- capacity: at most `capacity_vms` machines per occurrence;
- redundancy: never all members of one role in the same occurrence, or in occurrences of other
  windows starting at the same time (at most `max_role_share` of them, and always one fewer than
  all); a role's members are counted within one environment,
  since redundancy is a property of one service (production `db` machines do not stand in for
  test ones);
- rollback hold: a patch rolled back on a machine is not scheduled there again (status
  `held_after_rollback`, with the rollback id) until an authorization event after the rollback
  authorizes it again (`reauthorized_at`); it is then scheduled as a `reapply`;
- duration: installs plus one reboot fit the occurrence; what does not fit moves to the next one;
- order within a machine: servicing stack updates first, then the authorization's deploy order
  and dependencies, then priority;
- one reboot per machine per occurrence (the last step).

Each row says why it was placed there; gaps that cannot meet their due date with the current
windows are marked, and gaps with no possible placement in the horizon are listed as such.
"""

from __future__ import annotations

import math
import sys
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from operator import itemgetter
from zoneinfo import ZoneInfo

import pandas as pd
from dateutil.rrule import rrulestr

SCHEDULE_COLUMNS = [
    "gap_id", "vm_id", "vm_name", "patch_key", "kb", "gap_type", "action", "window_id", "ring",
    "window_start", "window_end", "sequence", "sla_due", "status", "reason", "rollback_id",
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


def window_occurrences(
    windows: pd.DataFrame, blackouts: pd.DataFrame, as_of: date, horizon_days: int
) -> dict[str, list[Occurrence]]:
    """Occurrences of every window after as_of within the horizon, blackout dates removed.

    A register window recurs from the day before as_of at its start_time. A window with
    `starts_at` (a maintenance configuration's startDateTime, local time) recurs from then, never
    after `expires_at`, each occurrence moved by `offset_days` ("Offset2": two days later)."""
    begin = datetime.combine(as_of + timedelta(days=1), time(), UTC)
    end = begin + timedelta(days=horizon_days)
    result: dict[str, list[Occurrence]] = {}
    for w in windows.sort_values("window_id").itertuples(index=False):
        zone = ZoneInfo(w.time_zone)
        starts_at, expires_at = _local(w, "starts_at", zone), _local(w, "expires_at", zone)
        offset = timedelta(days=int(_value(w, "offset_days") or 0))
        if starts_at is None:
            local = w.start_time if isinstance(w.start_time, time) else time.fromisoformat(str(w.start_time))
            dtstart = datetime.combine(as_of - timedelta(days=1), local, zone)
        else:
            dtstart = starts_at
        rule = rrulestr(w.rrule, dtstart=dtstart)
        dark = _blackout_days(blackouts, w.environment)
        capacity, share = _value(w, "capacity_vms"), _value(w, "max_role_share")
        found = []
        for base in rule.between((begin - offset).astimezone(zone), (end - offset).astimezone(zone), inc=True):
            local_start = base + offset  # wall-clock days: the time of day stays across DST
            if local_start < dtstart or (expires_at is not None and local_start > expires_at):
                continue
            if local_start.date() in dark or not begin <= local_start <= end:
                continue
            start = local_start.astimezone(UTC)
            found.append(Occurrence(
                window_id=w.window_id, ring=int(w.ring), start=start,
                end=start + timedelta(minutes=int(w.duration_minutes)),
                # NULL capacity: unlimited; NULL role share: only "never all members of a role".
                capacity=sys.maxsize if capacity is None else int(capacity),
                max_role_share=1.0 if share is None else float(share),
            ))
        result[w.window_id] = found
    return result


def _value(row, column: str):
    """A window column that may be absent (register windows have no starts_at) or NULL."""
    value = getattr(row, column, None)
    return None if value is None or pd.isna(value) else value


def _local(row, column: str, zone: ZoneInfo) -> datetime | None:
    value = _value(row, column)
    return None if value is None else pd.Timestamp(value).to_pydatetime().replace(tzinfo=zone)


def _blackout_days(blackouts: pd.DataFrame, environment: str) -> set[date]:
    days: set[date] = set()
    for b in blackouts.itertuples(index=False):
        if b.environment in ("*", environment):
            day = pd.Timestamp(b.starts_on).date()
            while day <= pd.Timestamp(b.ends_on).date():
                days.add(day)
                day += timedelta(days=1)
    return days


def role_limits(machines: pd.DataFrame) -> dict[tuple[str, str], int]:
    """Members of each role within each environment: (environment, role) -> machines."""
    if not len(machines):
        return {}
    return machines.groupby([machines["environment"].fillna(""), "role"]).size().to_dict()


def _allowed_in_role(size: int, share: float) -> int:
    """How many members of a role of `size` may share one occurrence: never all of them."""
    if size <= 1:
        return 1
    return max(1, min(size - 1, math.floor(share * size)))


# One actionable gap as a plain tuple (the placement loop touches no pandas objects).
_GAP_ID, _VM_ID, _PATCH, _KB, _TYPE, _DUE, _SORT, _DEPS, _NEEDS, _DUE_DAY, _ACTION, _ROLLBACK = range(12)


def _gap_records(actionable: pd.DataFrame, minutes_per_patch: float) -> dict[object, list[tuple]]:
    """Each machine's gaps as tuples, in input order, with their ordering keys precomputed."""
    not_ssu = (~actionable["title"].fillna("").str.contains("Servicing Stack", case=False)).tolist()
    order = actionable["deploy_order"].fillna(10**6).tolist()
    neg_priority = (-actionable["priority"].fillna(0)).tolist()
    rollback = actionable["rollback_id"].tolist()
    due_days: dict[object, date | None] = {}
    by_vm: dict[object, list[tuple]] = {}
    for gap_id, vm_id, patch, kb, gap_type, due, listed, stack_last, deploy, priority, rolled_back in zip(
        actionable["gap_id"].tolist(), actionable["vm_id"].tolist(), actionable["patch_key"].tolist(),
        actionable["kb"].tolist(), actionable["gap_type"].tolist(), actionable["sla_due"].tolist(),
        actionable["dependencies"].tolist(), not_ssu, order, neg_priority, rollback, strict=True,
    ):
        if due is None or pd.isna(due):
            due_day = None
        elif due in due_days:
            due_day = due_days[due]
        else:
            due_day = due_days[due] = pd.Timestamp(due).date()
        missing_patch = not isinstance(patch, str) and pd.isna(patch)
        reapply = isinstance(rolled_back, str) and gap_type != "pending_reboot"  # re-authorized after a rollback
        deps = [str(d) for d in listed] if hasattr(listed, "__iter__") and not isinstance(listed, str) else []
        by_vm.setdefault(vm_id, []).append((
            gap_id, vm_id, patch, kb, gap_type, due,
            (stack_last, deploy, priority, missing_patch, "" if missing_patch else patch), deps,
            0 if gap_type == "pending_reboot" else minutes_per_patch, due_day,
            "reapply" if reapply else ACTIONS[gap_type], rolled_back if reapply else None,
        ))
    return by_vm


def _patch_order(gaps: list[tuple]) -> list[tuple]:
    """Servicing stack first, then deploy order, then dependencies, then priority."""
    if len(gaps) <= 1:
        return gaps
    ordered = sorted(gaps, key=itemgetter(_SORT))  # stable: ties keep input order
    deps = {gap[_PATCH]: gap[_DEPS] for gap in ordered}
    placed: list = []
    done: set = set()
    visiting: set = set()

    def visit(patch) -> None:  # depth-first: a dependency in the same batch goes first
        if patch in done or patch in visiting:
            return
        visiting.add(patch)
        for dep in deps.get(patch, []):
            if dep in deps:
                visit(dep)
        visiting.discard(patch)
        done.add(patch)
        placed.append(patch)

    for gap in ordered:
        visit(gap[_PATCH])
    rank = {p: i for i, p in enumerate(placed)}
    return sorted(ordered, key=lambda gap: rank[gap[_PATCH]])


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
    """Place every actionable gap; see the module docstring for the rules.

    `gaps` may carry `rollback_id`, `rolled_back_at` and `reauthorized_at` (staging.remediation_holds)
    for patches rolled back on the machine."""
    occurrences = window_occurrences(windows, blackouts, as_of, horizon_days)
    ring_of = dict(zip(windows["window_id"], windows["ring"].astype(int), strict=True))
    machine = machines.set_index("vm_id")
    rows: list[tuple] = []
    role_size = role_limits(machines)
    patch_ready: dict[str, datetime] = {}  # patch -> end of its latest lower-ring placement

    actionable = gaps[gaps["gap_type"].isin(ACTIONS)].copy()
    if actionable.empty:
        return pd.DataFrame(columns=SCHEDULE_COLUMNS)
    for column in ("rollback_id", "rolled_back_at", "reauthorized_at"):
        if column not in actionable:
            actionable[column] = None
    # Held: rolled back and not authorized again since (a pending reboot is not a reinstall).
    held_mask = (actionable["rollback_id"].notna() & actionable["reauthorized_at"].isna()
                 & (actionable["gap_type"] != "pending_reboot"))
    held = actionable[held_mask]
    actionable = actionable[~held_mask]
    rows += [
        (g.gap_id, g.vm_id, machine["name"].get(g.vm_id), g.patch_key, g.kb, g.gap_type, "reapply",
         None, None, None, None, None, g.sla_due, "held_after_rollback",
         f"rolled back by {g.rollback_id} at {pd.Timestamp(g.rolled_back_at):%Y-%m-%d %H:%M} UTC; held until "
         "an authorization event after the rollback authorizes it again", g.rollback_id)
        for g in held.itertuples(index=False)
    ]
    if actionable.empty:
        return _frame(rows)
    actionable["window_id"] = actionable["vm_id"].map(machine["maintenance_window"])
    actionable["ring"] = actionable["window_id"].map(ring_of)
    urgency = actionable.groupby("vm_id").agg(
        top_priority=("priority", "max"), first_due=("sla_due", "min"), ring=("ring", "first")
    )
    urgency["ring"] = urgency["ring"].fillna(99)
    urgency = urgency.assign(neg_priority=-urgency["top_priority"].fillna(0))
    urgency = urgency.sort_values(["ring", "neg_priority", "first_due", "vm_id"], na_position="last",
                                  kind="mergesort")

    # Plain lookups for the sequential loop: machine attributes, per-occurrence facts and load.
    vm_info = dict(zip(machine.index.tolist(), zip(
        machine["name"].tolist(), machine["maintenance_window"].tolist(), machine["role"].tolist(),
        machine["environment"].fillna("").tolist(), strict=True), strict=True))
    slot_of: dict[Occurrence, list] = {}  # equal occurrences share one load: [machines, roles]
    # Roles are counted over every window starting at that time: a maintenance configuration and
    # a register window of the same hour patch their machines at once.
    roles_at: dict[datetime, defaultdict] = {}
    plan: dict[str, list[tuple]] = {
        window_id: [(
            occ, slot_of.setdefault(occ, [0, roles_at.setdefault(occ.start, defaultdict(int))]), occ.capacity,
            occ.max_role_share,
            (occ.end - occ.start).total_seconds() / 60 - reboot_minutes, occ.start, occ.start.date(),
            f"first occurrence of {occ.window_id} (ring {occ.ring}) with room",
        ) for occ in found]
        for window_id, found in occurrences.items()
    }
    first_open = dict.fromkeys(plan, 0)  # occurrences before it are full (load only grows)
    allowed: dict[tuple[tuple[str, str], float], int] = {}
    gaps_of = _gap_records(actionable, minutes_per_patch)

    current_ring = None
    ring_placements: list[tuple[str, datetime]] = []
    for vm_id, ring in zip(urgency.index.tolist(), urgency["ring"].tolist(), strict=True):
        vm_name, window_id, role, environment = vm_info[vm_id]
        vm_gaps = _patch_order(gaps_of[vm_id])
        if ring != current_ring:  # lower rings are done: their placements now gate this ring
            for patch, finished in ring_placements:
                patch_ready[patch] = max(patch_ready.get(patch, finished), finished)
            ring_placements, current_ring = [], ring
        if not isinstance(window_id, str) or window_id not in occurrences:
            reason = ("no maintenance window (no maintenance configuration assigned, no tag maintenance-window)"
                      if not isinstance(window_id, str) else f"unknown maintenance window {window_id!r}")
            rows += [_row(g, vm_name, None, None, "unplaceable", reason) for g in vm_gaps]
            continue
        pending = vm_gaps
        has_role = isinstance(role, str)
        member = (environment, role)  # a role's members are counted within one environment
        slots = plan[window_id]
        start_at = first_open[window_id]
        while start_at < len(slots) and slots[start_at][1][0] >= slots[start_at][2]:
            start_at += 1
        first_open[window_id] = start_at
        for k in range(start_at, len(slots)):
            if not pending:
                break
            occ, slot, capacity, share, budget, start, start_day, first_why = slots[k]
            if slot[0] >= capacity:
                continue
            if has_role:
                limit = allowed.get((member, share))
                if limit is None:
                    limit = allowed[(member, share)] = _allowed_in_role(role_size.get(member, 1), share)
                if slot[1][member] >= limit:
                    continue
            batch, rest = [], []
            for gap in pending:
                ready = patch_ready.get(gap[_PATCH])
                needs = gap[_NEEDS]
                if (ready and ready > start) or needs > budget:
                    rest.append(gap)
                    continue
                budget -= needs
                batch.append(gap)
            if not batch:
                continue
            slot[0] += 1
            if has_role:
                slot[1][member] += 1
            steps = len(batch)
            for sequence, gap in enumerate(batch, start=1):
                due_day = gap[_DUE_DAY]
                late = due_day is not None and start_day > due_day
                gated = patch_ready.get(gap[_PATCH])
                why = [first_why]
                if gated:
                    why.append(f"after the lower rings finished this patch at {gated:%Y-%m-%d %H:%M} UTC")
                if gap[_ROLLBACK]:
                    why.append(f"re-apply after rollback {gap[_ROLLBACK]}, authorized again since")
                why.append(f"step {sequence} of {steps}, reboot last")
                if late:
                    why.append(f"cannot meet its due date {due_day} with the current windows")
                rows.append(_row(gap, vm_name, occ, sequence, "cannot_meet_deadline" if late else "scheduled",
                                 "; ".join(why)))
                ring_placements.append((gap[_PATCH], occ.end))
            pending = rest
        rows += [_row(g, vm_name, None, None, "unplaceable",
                      f"no occurrence of {window_id} within {horizon_days} days has room")
                 for g in pending]
    return _frame(rows)


def _frame(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=SCHEDULE_COLUMNS).sort_values(
        ["status", "window_start", "vm_id", "sequence", "gap_id"], na_position="last", kind="mergesort"
    ).reset_index(drop=True)


def _row(gap: tuple, vm_name, occ: Occurrence | None, sequence: int | None, status: str, reason: str) -> tuple:
    """One output row, in SCHEDULE_COLUMNS order."""
    return (
        gap[_GAP_ID], gap[_VM_ID], vm_name, gap[_PATCH], gap[_KB], gap[_TYPE], gap[_ACTION],
        occ.window_id if occ else None, occ.ring if occ else None,
        occ.start if occ else None, occ.end if occ else None,
        sequence, gap[_DUE], status, reason, gap[_ROLLBACK],
    )
