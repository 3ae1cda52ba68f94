"""What happened on every machine: monthly install runs in maintenance windows, and the state of
every (machine, patch chain) pair at any instant.

A pair's state is a position in its chain: the newest patch installed (-1 before the catalog).
Runs move it forward to the newest patch that is released and authorized for the machine's
scope; a newer released patch than the position is what an assessment reports missing (older
ones are superseded and no longer offered). All arithmetic is numpy over pairs; Python loops go
over months, chain positions and planted cases only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np

from .authz import NEVER, Plan, scope_index
from .catalog import Catalog
from .fleet import BLACKOUTS, WINDOWS, Fleet
from .period import DAY_US, HOUR_US, Period, local_us

INSTALLED, FAILED, EXCLUDED, NOT_SELECTED = 0, 1, 2, 3
STATE_NAMES = ["Installed", "Failed", "Excluded", "NotSelected"]
_WEEKDAYS = ["MO", "TU", "WE", "TH", "FR", "SA", "SU"]
_P_SKIP, _P_FAIL, _P_RETRY_FAIL = 0.03, 0.02, 0.15
_RETRY_AFTER = 2 * DAY_US


def occurrence(rrule: str, not_before: date) -> date:
    """First occurrence on or after a date, for the RRULE forms the demo windows use."""
    parts = dict(p.split("=") for p in rrule.split(";"))
    if parts["FREQ"] == "DAILY":
        return not_before
    if parts["FREQ"] == "WEEKLY":
        wd = _WEEKDAYS.index(parts["BYDAY"])
        return not_before + timedelta(days=(wd - not_before.weekday()) % 7)
    # MONTHLY;BYDAY=+nXX: the n-th weekday of the month, this month or the next
    nth, wd = int(parts["BYDAY"][:-2]), _WEEKDAYS.index(parts["BYDAY"][-2:])
    first = not_before.replace(day=1)
    for _ in range(2):
        day = first + timedelta(days=(wd - first.weekday()) % 7 + 7 * (nth - 1))
        if day >= not_before:
            return day
        first = (first + timedelta(days=32)).replace(day=1)
    raise ValueError(rrule)


@dataclass
class Simulation:
    pair_vm: np.ndarray
    pair_chain: np.ndarray
    chain_mat: np.ndarray
    chain_rel: np.ndarray
    run_time: np.ndarray  # (machine, slot): slot 2m = regular run of month m, 2m+1 = retry
    run_on: np.ndarray
    level_after: np.ndarray  # (pair, slot)
    attempts: dict[str, np.ndarray]  # vm, slot, pair, patch, state
    reboot_run: np.ndarray  # (machine, slot) run left a reboot pending
    reboot_from: np.ndarray  # (machine) reboot pending since, NEVER if not
    report_until: np.ndarray  # (machine) last instant the machine reports
    overrides: list[tuple[int, int, int]] = field(default_factory=list)  # pair, from, position
    extra_children: list[tuple[int, int, int, int]] = field(default_factory=list)  # vm, slot, patch, state

    def pair(self, vm: int, chain: int) -> int:
        return int(np.flatnonzero((self.pair_vm == vm) & (self.pair_chain == chain))[0])

    def levels_at(self, pairs: np.ndarray, times: np.ndarray) -> np.ndarray:
        """Chain position of each pair at the given instants (after runs and overrides)."""
        done = (self.run_time[self.pair_vm[pairs]] <= times[:, None]).sum(axis=1)
        level = np.where(
            done > 0, self.level_after[pairs, np.maximum(done - 1, 0)], -1
        )
        for pair, start, position in self.overrides:
            level = np.where((pairs == pair) & (times >= start), position, level)
        return level

    def top_at(self, pairs: np.ndarray, times: np.ndarray) -> np.ndarray:
        """Position of the newest released patch of each pair's chain at the instants."""
        return (self.chain_rel[self.pair_chain[pairs]] <= times[:, None]).sum(axis=1) - 1

    def last_regular_slot(self, vm: int, end_us: int, margin: int = 0) -> int:
        slots = np.arange(0, self.run_time.shape[1], 2)
        ok = self.run_on[vm, slots] & (self.run_time[vm, slots] + margin <= end_us)
        return int(slots[ok][-1])


def _pairs(catalog: Catalog, fleet: Fleet) -> tuple[np.ndarray, np.ndarray]:
    os_type, pid, role = fleet.col("os_type"), fleet.col("product_id"), fleet.col("role")
    vms, chains = [], []
    for c, chain in enumerate(catalog.chains):
        family, _, target = chain.partition(":")
        if family == "deb":
            mask = os_type == "Linux"
        elif family == "sql":
            mask = (os_type == "Windows") & (role == "sql")
        else:
            mask = pid == target
        idx = np.flatnonzero(mask)
        vms.append(idx)
        chains.append(np.full(len(idx), c))
    vm, chain = np.concatenate(vms), np.concatenate(chains)
    order = np.lexsort((chain, vm))
    return vm[order], chain[order]


def _schedule(catalog: Catalog, fleet: Fleet, rng: np.random.Generator) -> np.ndarray:
    """Scheduled run start of every machine for every month (regular and retry slots)."""
    n, months = len(fleet), catalog.months
    window = fleet.col("window")
    times = np.zeros((n, 2 * len(months)), dtype=np.int64)
    # Machines start at a random point of the window's first half.
    jitter = rng.integers(0, 120, n) * 60_000_000
    for w_id, _name, rrule, start, minutes, tz, _ring, _env, _cap, _share, lag in WINDOWS:
        mask = window == w_id
        for m, month in enumerate(months):
            day = occurrence(rrule, month.tuesday + timedelta(days=lag))
            times[mask, 2 * m] = local_us(day, start, tz) + jitter[mask] * minutes // 240
    times[:, 1::2] = times[:, 0::2] + _RETRY_AFTER
    return times


def _in_blackout(times: np.ndarray, env: np.ndarray) -> np.ndarray:
    out = np.zeros(times.shape, dtype=bool)
    for _id, first, last, scope, _reason in BLACKOUTS:
        lo = local_us(date.fromisoformat(first), "00:00", "UTC")
        hi = local_us(date.fromisoformat(last), "00:00", "UTC") + DAY_US
        applies = (env == scope) | (scope == "*")
        out |= applies[:, None] & (times >= lo) & (times < hi)
    return out


def simulate(
    catalog: Catalog, fleet: Fleet, plan: Plan, period: Period, rng: np.random.Generator
) -> Simulation:
    n = len(fleet)
    slots = fleet.slots
    pair_vm, pair_chain = _pairs(catalog, fleet)
    chain_mat, chain_rel = catalog.chain_matrix()
    run_time = _schedule(catalog, fleet, rng)
    n_slots = run_time.shape[1]
    planted = np.zeros(n, dtype=bool)
    planted[list(slots.values())] = True

    report_until = np.full(n, period.end_us, dtype=np.int64)
    for slot in ("stale_1", "stale_2"):
        report_until[slots[slot]] = period.end_us - 12 * DAY_US - DAY_US
    for slot in ("deallocated_1", "deallocated_2"):
        report_until[slots[slot]] = period.end_us - 15 * DAY_US - DAY_US + 9 * HOUR_US
    run_on = (run_time <= report_until[:, None]) & ~_in_blackout(run_time, fleet.col("environment"))
    run_on[:, 0::2] &= planted[:, None] | (rng.random((n, n_slots // 2)) >= _P_SKIP)

    sim = Simulation(
        pair_vm=pair_vm,
        pair_chain=pair_chain,
        chain_mat=chain_mat,
        chain_rel=chain_rel,
        run_time=run_time,
        run_on=run_on,
        level_after=np.zeros((len(pair_vm), n_slots), dtype=np.int64),
        attempts={},
        reboot_run=np.zeros(run_time.shape, dtype=bool),
        reboot_from=np.full(n, NEVER, dtype=np.int64),
        report_until=report_until,
    )
    kev_month = next(c.month for c in catalog.cves if c.cve == catalog.kev_cve)
    kev_m = catalog.months.index(kev_month)
    for slot in ("kev_1", "kev_2"):
        run_on[slots[slot], 2 * kev_m :] = False
    superseded_slot = {}
    for slot in ("superseded_1", "superseded_2"):
        vm = slots[slot]
        regular = sim.last_regular_slot(vm, period.end_us)
        superseded_slot[slot] = regular
        run_on[vm, regular - 2] = False  # skipped the month before: its LCU is superseded
    force_fail = {}
    for slot in ("failed_retry_1", "failed_retry_2"):
        vm = slots[slot]
        force_fail[vm] = sim.last_regular_slot(vm, period.end_us, _RETRY_AFTER + HOUR_US)

    scope = np.array(
        [scope_index(c, e) for c, e in zip(fleet.col("category"), fleet.col("environment"), strict=True)]
    )
    lcu_chain = np.array([c.startswith("lcu:") for c in catalog.chains])
    _run_all(sim, plan, scope, planted, force_fail, lcu_chain, rng)
    for slot in ("pending_reboot_1", "pending_reboot_2"):
        vm = slots[slot]
        last = sim.last_regular_slot(vm, period.end_us)
        sim.reboot_run[vm, last] = True
        sim.reboot_from[vm] = run_time[vm, last] + HOUR_US
    return sim


def _run_all(
    sim: Simulation,
    plan: Plan,
    scope: np.ndarray,
    planted: np.ndarray,
    force_fail: dict[int, int],
    lcu_chain: np.ndarray,
    rng: np.random.Generator,
) -> None:
    n = sim.run_time.shape[0]
    vm_p, c_p = sim.pair_vm, sim.pair_chain
    scope_p = scope[vm_p]
    level = np.full(len(vm_p), -1, dtype=np.int64)
    retry_needed = np.zeros(n, dtype=bool)
    chunks: list[tuple[np.ndarray, ...]] = []
    for r in range(sim.run_time.shape[1]):
        t_p = sim.run_time[vm_p, r]
        on_v = sim.run_on[:, r] & (retry_needed if r % 2 else True)
        sim.run_on[:, r] = on_v
        on_p = on_v[vm_p]
        target = np.full(len(vm_p), -1, dtype=np.int64)
        top = np.full(len(vm_p), -1, dtype=np.int64)
        for k in range(sim.chain_mat.shape[1]):
            patch = sim.chain_mat[c_p, k]
            released = (patch >= 0) & (sim.chain_rel[c_p, k] <= t_p)
            top = np.where(released, k, top)
            allowed = released & (plan.effective[np.maximum(patch, 0), scope_p] <= t_p)
            target = np.where(allowed, k, target)
        todo = on_p & (target > level)
        p_fail = _P_RETRY_FAIL if r % 2 else _P_FAIL
        fail = todo & ~planted[vm_p] & (rng.random(len(vm_p)) < p_fail)
        forced = np.array([vm for vm, s in force_fail.items() if s == r], dtype=np.int64)
        fail |= todo & np.isin(vm_p, forced) & lcu_chain[c_p]
        level = np.where(todo & ~fail, target, level)
        sim.level_after[:, r] = level
        retry_needed = np.bincount(vm_p[fail], minlength=n) > 0
        # What the run reports: installed or failed, and newer released patches it left out
        # (Excluded when rejected or deferred for the scope, NotSelected when not yet authorized).
        skipped = on_p & (top > np.maximum(target, level))
        top_patch = sim.chain_mat[c_p, np.maximum(top, 0)]
        state = np.where(fail, FAILED, INSTALLED)
        skip_state = np.where(plan.blocked[top_patch, scope_p], EXCLUDED, NOT_SELECTED)
        for mask, patches, states in (
            (todo, sim.chain_mat[c_p, np.maximum(target, 0)], state),
            (skipped, top_patch, skip_state),
        ):
            idx = np.flatnonzero(mask)
            chunks.append((vm_p[idx], np.full(len(idx), r), idx, patches[idx], states[idx]))
    names = ("vm", "slot", "pair", "patch", "state")
    sim.attempts = {k: np.concatenate([c[i] for c in chunks]) for i, k in enumerate(names)}
