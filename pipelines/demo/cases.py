"""Planted hard cases that act after the install runs, and demo_truth.json.

Run-level cases (skipped months, forced failures, pending reboots) are set in simulate.py and
authorization cases in authz.py; this module adds hand-made changes (rollbacks, manual installs
through the API), the patch operation documents, and the truth that tests compare against.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np

from .authz import Plan, scope_index
from .catalog import DEFENDER_PLATFORM_KB, NGINX_MANUAL, ZLIB_UNAUTHORIZED, Catalog
from .fleet import Fleet
from .period import DAY_US, HOUR_US, Period, iso
from .simulate import EXCLUDED, INSTALLED, NOT_SELECTED, Simulation
from .telemetry import success_error


def guid(text: str) -> str:
    """Same GUID as the `guid` SQL macro of telemetry.py."""
    h = hashlib.md5(text.encode()).hexdigest()
    return f"{h[0:8]}-{h[8:12]}-4{h[13:16]}-8{h[17:20]}-{h[20:32]}"


@dataclass
class Planted:
    cases: list[dict] = field(default_factory=list)
    operations: list[dict] = field(default_factory=list)
    rollbacks: list[dict] = field(default_factory=list)
    incidents: list[dict] = field(default_factory=list)
    exceptions: list[dict] = field(default_factory=list)


class _Planter:
    def __init__(self, catalog: Catalog, fleet: Fleet, plan: Plan, sim: Simulation, period: Period, seed: int):
        self.catalog, self.fleet, self.plan, self.sim, self.period, self.seed = (
            catalog, fleet, plan, sim, period, seed
        )
        self.out = Planted()
        self.vm_key = fleet.col("vm_key")

    def chain_of(self, vm: int, prefix: str) -> int:
        pid = self.fleet.col("product_id")[vm]
        return self.catalog.chains.index(f"{prefix}:{pid}" if prefix != "deb" else prefix)

    def key(self, patch: int) -> str:
        return self.catalog.patches[patch].key

    def case(self, case: str, vm: int | None, patch: int | None, state=None, gap=None, note="", **extra):
        self.out.cases.append(
            {
                "case": case,
                "vm_id": None if vm is None else str(self.vm_key[vm]),
                "patch_key": None if patch is None else self.key(patch),
                "expected_state": state,
                "expected_gap_type": gap,
                "note": note,
                **extra,
            }
        )

    def lcu_at(self, vm: int, slot: int, offset: int = 0) -> int:
        pair = self.sim.pair(vm, self.chain_of(vm, "lcu"))
        return int(self.sim.chain_mat[self.sim.pair_chain[pair], self.sim.level_after[pair, slot] + offset])


def plant(catalog: Catalog, fleet: Fleet, plan: Plan, sim: Simulation, period: Period, seed: int) -> Planted:
    p = _Planter(catalog, fleet, plan, sim, period, seed)
    s = fleet.slots
    end = period.end_us
    for slot in ("pending_reboot_1", "pending_reboot_2"):
        vm = s[slot]
        last = sim.last_regular_slot(vm, end)
        p.case("pending_reboot", vm, p.lcu_at(vm, last), "installed_pending_reboot", "pending_reboot",
               f"installed {iso(sim.run_time[vm, last])[:10]}, rebootStatus Required, rebootPending since")
    for slot in ("failed_retry_1", "failed_retry_2"):
        vm = s[slot]
        a = sim.attempts
        failed = np.flatnonzero((a["vm"] == vm) & (a["state"] == 1))
        patch = int(a["patch"][failed[-1]])
        p.case("failed_then_retry_succeeded", vm, patch, "installed", None,
               "Failed in the regular run, Installed by the retry run two days later"
               + (" (UpdateRunProgress SucceededOnRetry)" if fleet.col("source")[vm] == "la" else ""))
    for slot in ("superseded_1", "superseded_2"):
        vm = s[slot]
        last = sim.last_regular_slot(vm, end)
        p.case("missing_superseded_by_installed", vm, p.lcu_at(vm, last, -1), "superseded_satisfied", None,
               f"skipped the previous month; KB{p.key(p.lcu_at(vm, last))} (supersedes it) installed")
    kev = next(c for c in catalog.cves if c.cve == catalog.kev_cve)
    for slot in ("kev_1", "kev_2"):
        vm = s[slot]
        patch = kev.fixes[fleet.col("product_id")[vm]]
        p.case("kev_past_due", vm, patch, "missing", "authorized_missing",
               f"{kev.cve} is in KEV with a due date inside the period; install runs stopped", cve=kev.cve)
    for slot in ("stale_1", "stale_2"):
        p.case("stale_assessment", s[slot], None, "unknown_stale", "stale_assessment",
               f"no assessment after {iso(sim.report_until[s[slot]])[:10]}")
    for slot in ("deallocated_1", "deallocated_2"):
        p.case("deallocated_vm", s[slot], None, "unknown_stale", "stale_assessment",
               f"powerState 'VM deallocated' since {iso(sim.report_until[s[slot]])[:10]}")
    _rollbacks(p)
    _manual_installs(p)
    _not_selected(p)
    _excluded(p)
    for slot, case in (("la_only_1", "log_analytics_only"), ("la_only_2", "log_analytics_only"),
                       ("onprem_1", "non_azure_log_analytics_only"), ("onprem_2", "non_azure_log_analytics_only"),
                       ("onprem_3", "non_azure_log_analytics_only"),
                       ("both_1", "resource_graph_and_log_analytics"), ("both_2", "resource_graph_and_log_analytics"),
                       ("rg_only_1", "resource_graph_only")):
        vm = s[slot]
        note = "Linux: VMUUID byte-swapped in Log Analytics" if fleet.col("os_type")[vm] == "Linux" and "la" in fleet.col("source")[vm] else ""
        p.case(case, vm, None, note=note, computer=str(fleet.col("computer")[vm]))
    _authorization_cases(p)
    _exceptions(p)
    _assessments(p)
    _failed_install(p)
    return p.out


def _rollbacks(p: _Planter) -> None:
    sim, s = p.sim, p.fleet.slots
    for n, slot in enumerate(("rollback_1", "rollback_2"), start=1):
        vm = s[slot]
        last = sim.last_regular_slot(vm, p.period.end_us, DAY_US)
        pairs = np.flatnonzero(sim.pair_vm == vm)
        before = sim.level_after[pairs, last - 1] if last else np.full(len(pairs), -1)
        gain = sim.level_after[pairs, last] - before
        pair = int(pairs[np.argmax(gain)]) if gain.max() > 0 else int(pairs[np.argmax(sim.level_after[pairs, last])])
        position = int(sim.level_after[pair, last])
        patch = int(sim.chain_mat[sim.pair_chain[pair], position])
        at = sim.run_time[vm, last] + DAY_US
        sim.overrides.append((pair, at, position - 1))
        incident = f"INC-R{n:04d}"
        vm_id = str(p.fleet.col("arm_id")[vm])
        p.out.incidents.append(
            {"incident_id": incident, "source": "internal", "external_case_id": "",
             "patch_key": p.key(patch), "vm_id": vm_id, "opened_at": iso(sim.run_time[vm, last] + 10 * HOUR_US),
             "closed_at": iso(at + 6 * HOUR_US), "severity": "A",
             "summary": "Application outage after the maintenance window; patch rolled back"}
        )
        p.out.rollbacks.append(
            {"rollback_id": f"RB-{n:04d}", "vm_id": vm_id, "patch_key": p.key(patch),
             "rolled_back_at": iso(at), "reason": "Service outage after install", "incident_id": incident,
             "actor": "ops.oncall@contoso.com"}
        )
        p.case("rollback_after_incident", vm, patch, "missing", None,
               f"installed {iso(sim.run_time[vm, last])[:10]}, incident {incident}, rolled back {iso(at)[:10]}")


def _install_op(p: _Planter, vm: int, patch: int, at: int) -> dict:
    fleet, patch_obj = p.fleet, p.catalog.patches[patch]
    os_type = fleet.col("os_type")[vm]
    act = guid(f"{p.seed}:manual:{vm}:{patch}")
    line = {
        "patchId": patch_obj.patch_id, "name": patch_obj.title if os_type == "Windows" else patch_obj.package,
        "version": patch_obj.version or "", "kbId": patch_obj.kb or "",
        "classifications": [patch_obj.classification], "installationState": "Installed",
    }
    if os_type == "Windows":
        line["msrcSeverity"] = patch_obj.severity
    return {
        "_file": f"installPatches_{fleet.col('name')[vm]}_{iso(at)[:10]}.json",
        "resourceId": str(fleet.col("arm_id")[vm]),
        "operation": "installPatches",
        "result": {
            "status": "Succeeded", "installationActivityId": act, "rebootStatus": "NotNeeded",
            "maintenanceWindowExceeded": False, "excludedPatchCount": 0, "notSelectedPatchCount": 0,
            "pendingPatchCount": 0, "installedPatchCount": 1, "failedPatchCount": 0,
            "startDateTime": iso(at), "patches": [line], "maintenanceRunId": "",
            "error": success_error(os_type),
        },
    }


def _manual_installs(p: _Planter) -> None:
    s, end = p.fleet.slots, p.period.end_us
    nginx = p.catalog.index(f"{NGINX_MANUAL[0]}_{NGINX_MANUAL[1]}")
    for slot in ("manual_unauthorized_1", "manual_unauthorized_2"):
        vm = s[slot]
        p.out.operations.append(_install_op(p, vm, nginx, end - 4 * DAY_US - 10 * HOUR_US))
        p.case("installed_never_authorized", vm, nginx, "installed", "installed_unauthorized",
               "installed by hand through installPatches; no authorization event exists for it")
    rejected = p.plan.rejected_patch
    chain = p.catalog.chains.index(p.catalog.patches[rejected].chain)
    position = int(np.flatnonzero(p.sim.chain_mat[chain] == rejected)[0])
    for slot in ("manual_rejected_1", "manual_rejected_2"):
        vm = s[slot]
        at = end - 3 * DAY_US - 10 * HOUR_US
        p.sim.overrides.append((p.sim.pair(vm, chain), at, position))
        p.out.operations.append(_install_op(p, vm, rejected, at))
        p.case("installed_rejected", vm, rejected, "installed", "installed_rejected",
               "rejected for win-app production after a failed test, then installed through installPatches")


def _not_selected(p: _Planter) -> None:
    defender = p.catalog.index(DEFENDER_PLATFORM_KB)
    for slot in ("not_selected_1", "not_selected_2"):
        vm = p.fleet.slots[slot]
        last = p.sim.last_regular_slot(vm, p.period.end_us)
        p.sim.extra_children.append((vm, last, defender, NOT_SELECTED))
        p.case("not_selected_in_run", vm, defender, "not_selected", None,
               f"classification Updates not in the run's classificationsToInclude; run {guid(f'{p.seed}:run:{vm}:{last}')}")


def _excluded(p: _Planter) -> None:
    a = p.sim.attempts
    for slot in ("manual_rejected_1", "manual_rejected_2"):
        vm = p.fleet.slots[slot]
        rows = np.flatnonzero((a["vm"] == vm) & (a["state"] == EXCLUDED) & (a["patch"] == p.plan.rejected_patch))
        if len(rows):
            run = guid(f"{p.seed}:run:{vm}:{int(a['slot'][rows[-1]])}")
            p.case("excluded_in_run", vm, p.plan.rejected_patch, None, None,
                   f"run {run} lists it as Excluded (rejected for the scope)")


def _authorization_cases(p: _Planter) -> None:
    a, sim = p.sim.attempts, p.sim
    category, env = p.fleet.col("category"), p.fleet.col("environment")
    for entry in p.plan.cases:
        patch = entry.pop("_patch")
        installed = np.flatnonzero(
            (a["patch"] == patch) & (a["state"] == INSTALLED)
            & (category[a["vm"]] == entry["asset_category"]) & (env[a["vm"]] == "production")
        )
        times = sim.run_time[a["vm"][installed], a["slot"][installed]]
        vm = int(a["vm"][installed[np.argmin(times)]]) if len(installed) else None
        if entry["case"] == "approved_after_install" and len(installed):
            first = int(times.min())
            for event in p.plan.events:
                if (event["patch_key"], event["asset_category"], event["environment"], event["to_state"]) == (
                    entry["patch_key"], entry["asset_category"], "production", "authorized"
                ):
                    event["occurred_at"] = iso(first + 6 * HOUR_US)
        gap = "untested_in_production" if entry["case"] == "untested_in_production" else None
        notes = {
            "illegal_transition": "authorized again straight from rejected/revoked, without a new proposal",
            "approved_by_tester": "the approver is the tester of the patch test",
            "approved_by_requester": "the approver is the requester who proposed it",
            "untested_in_production": "authorized and installed in production with no patch test",
            "approved_after_install": "authorized 6 hours after the first production install",
            "emergency_without_pir": "emergency change with no post-implementation review",
        }
        p.case(entry["case"], vm, patch, None, gap, notes[entry["case"]],
               asset_category=entry["asset_category"], environment="production")


def _exceptions(p: _Planter) -> None:
    s, end = p.fleet.slots, p.period.end_us
    kev_vm = s["kev_2"]
    kev = next(c for c in p.catalog.cves if c.cve == p.catalog.kev_cve)
    rows = [
        (str(p.fleet.col("arm_id")[kev_vm]), p.fleet.col("category")[kev_vm],
         p.key(kev.fixes[p.fleet.col("product_id")[kev_vm]]), "", end - 10 * DAY_US, "active"),
        ("", "win-dc", "", kev.cve, end - 20 * DAY_US, "active"),
        (str(p.fleet.col("arm_id")[s["stale_1"]]), p.fleet.col("category")[s["stale_1"]], "", "",
         end + 60 * DAY_US, "active"),
        ("", "lnx-db", "", "", end + 30 * DAY_US, "revoked"),
    ]
    for n, (vm_id, cat, patch_key, cve, expires, status) in enumerate(rows, start=1):
        p.out.exceptions.append(
            {"exception_id": f"EXC-{n:04d}", "vm_id": vm_id, "asset_category": cat,
             "patch_key": patch_key, "cve": cve,
             "reason": "Vendor application certification pending for the new build",
             "compensating_control": "Host firewall restricts inbound traffic to the app tier",
             "risk_owner": "ciso-office@contoso.com", "requested_by": "app-services@contoso.com",
             "approver": "cab.chair@contoso.com", "approved_at": iso(expires - 60 * DAY_US),
             "expires_at": iso(expires), "status": status}
        )
    p.case("expired_exception", kev_vm, kev.fixes[p.fleet.col("product_id")[kev_vm]], "missing",
           "authorized_missing", "EXC-0001 expired 10 days before the end but still says active")
    p.case("expired_exception", None, None, None, None,
           f"EXC-0002: category-wide exception for {kev.cve} on win-dc expired 20 days before the end")


def _assessments(p: _Planter) -> None:
    """assessPatches calls on two machines on the last day, on the Linux one also 3 days before."""
    sim, s = p.sim, p.fleet.slots
    last = p.period.end_us - 8 * HOUR_US
    for slot, at in (("rg_only_1", last), ("both_2", last - 3 * DAY_US), ("both_2", last)):
        vm = s[slot]
        os_type = p.fleet.col("os_type")[vm]
        pairs = np.flatnonzero(sim.pair_vm == vm)
        times = np.full(len(pairs), at)
        level, top = sim.levels_at(pairs, times), sim.top_at(pairs, times)
        missing = [int(sim.chain_mat[sim.pair_chain[q], t]) for q, lv, t in zip(pairs, level, top, strict=True) if t > lv]
        if os_type == "Linux":  # offered to the machine, never proposed for authorization
            zlib = p.catalog.index(f"{ZLIB_UNAUTHORIZED[0]}_{ZLIB_UNAUTHORIZED[1]}")
            missing.append(zlib)
            if at == last:
                p.case("available_never_authorized", vm, zlib, "missing", "available_unauthorized",
                       "listed Available by assessPatches 3 days before the end and on the last day; "
                       "no authorization event exists for it")
        act = guid(f"{p.seed}:assess-op:{vm}" + ("" if at == last else f":{at}"))
        available = [
            {"patchId": p.catalog.patches[m].patch_id,
             "name": p.catalog.patches[m].title if os_type == "Windows" else p.catalog.patches[m].package,
             "version": p.catalog.patches[m].version or "", "kbId": p.catalog.patches[m].kb or "",
             "classifications": [p.catalog.patches[m].classification],
             "rebootBehavior": p.catalog.patches[m].reboot, "activityId": act,
             "publishedDate": iso(p.catalog.patches[m].release_us),
             "lastModifiedDateTime": iso(at + 60_000_000), "assessmentState": "Available"}
            for m in missing
        ]
        security = sum(p.catalog.patches[m].classification == "Security" for m in missing)
        p.out.operations.append(
            {"_file": f"assessPatches_{p.fleet.col('name')[vm]}_{iso(at)[:10]}.json",
             "resourceId": str(p.fleet.col("arm_id")[vm]), "operation": "assessPatches",
             "result": {"status": "Succeeded", "assessmentActivityId": act, "rebootPending": False,
                        "criticalAndSecurityPatchCount": security, "otherPatchCount": len(missing) - security,
                        "startDateTime": iso(at), "availablePatches": available,
                        "error": success_error(os_type)}}
        )


def _failed_install(p: _Planter) -> None:
    """installPatches three evenings before the end: a missing patch fails, and the daily
    assessments since still list it missing (a failure that later assessments do not clear)."""
    sim, s = p.sim, p.fleet.slots
    at = p.period.end_us - 3 * DAY_US - 30 * 60_000_000  # after that day's assessments (at most 22:30)
    planted = set(s.values())
    ordinary = [vm for vm in range(len(p.fleet)) if vm not in planted]
    # (not authorized, machine, patch): ordinary machines first, then those of the source cases.
    candidates = []
    for vm in [*ordinary, *(s[k] for k in ("rg_only_1", "both_1", "both_2", "la_only_1", "la_only_2"))]:
        scope = scope_index(p.fleet.col("category")[vm], p.fleet.col("environment")[vm])
        pairs = np.flatnonzero(sim.pair_vm == vm)
        times = np.full(len(pairs), at)
        level, top = sim.levels_at(pairs, times), sim.top_at(pairs, times)
        # Still the same missing patch at the end: no run installs it afterwards.
        ends = np.full(len(pairs), p.period.end_us)
        same = (sim.levels_at(pairs, ends) == level) & (sim.top_at(pairs, ends) == top) & (sim.report_until[vm] >= p.period.end_us)
        for q, lv, t in zip(pairs[same], level[same], top[same], strict=True):
            if t > lv:
                patch = int(sim.chain_mat[sim.pair_chain[q], t])
                candidates.append((bool(p.plan.effective[patch, scope] > at), vm, patch))
    if not candidates:
        return
    # An authorized patch where there is one (a small fleet may have none).
    unauthorized, vm, patch = min(candidates, key=lambda c: c[0])
    op = _install_op(p, vm, patch, at)
    op["_file"] = op["_file"].replace("installPatches_", "installPatches_failed_")
    result = op["result"]
    result.update(status="Failed", installedPatchCount=0, failedPatchCount=1,
                  error={"details": [], "code": "PatchInstallationFailure", "message": "1 patch(es) failed to install"})
    result["patches"][0]["installationState"] = "Failed"
    p.out.operations.append(op)
    p.case("failed_install_still_failed", vm, patch, "failed", "failed_reapply",
           f"installPatches at {iso(at)[:16]} failed on this {'not yet authorized' if unauthorized else 'authorized'} "
           "patch; the daily assessments since list it missing")


def daily_truth(catalog: Catalog, fleet: Fleet, sim: Simulation, period: Period) -> list[dict]:
    """State of every chain on every planted machine at the end of two past days."""
    out = []
    for offset in (period.days // 3, 2 * period.days // 3):
        day = period.start + timedelta(days=offset)
        t = period.start_us + (offset + 1) * DAY_US - 1
        for vm in sorted(fleet.slots.values()):
            pairs = np.flatnonzero(sim.pair_vm == vm)
            times = np.full(len(pairs), t)
            level, top = sim.levels_at(pairs, times), sim.top_at(pairs, times)
            for q, lv, tp in zip(pairs, level, top, strict=True):
                chain = sim.chain_mat[sim.pair_chain[q]]
                if lv >= 0:
                    state = "installed_pending_reboot" if t >= sim.reboot_from[vm] else "installed"
                    out.append({"vm_id": str(fleet.col("vm_key")[vm]), "patch_key": catalog.patches[chain[lv]].key,
                                "date": day.isoformat(), "state": state})
                if tp > lv:
                    out.append({"vm_id": str(fleet.col("vm_key")[vm]), "patch_key": catalog.patches[chain[tp]].key,
                                "date": day.isoformat(), "state": "missing"})
    return out

