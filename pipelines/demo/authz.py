"""Patch tests and the authorization state machine for every patch and scope.

Each patch gets a chain proposed -> in_test -> authorized per scope: the pre-production rings
(`*` x test/staging/dev) and every production asset category of its OS. The simulation installs
a patch on a VM only once it is authorized for the VM's scope (`effective`), so ordinary VMs
are clean and the planted violations stand out. Planted cases are documented in
docs/demo-estate.md; `Plan.cases` names them for demo_truth.json.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .catalog import Catalog
from .catalog_types import Patch
from .fleet import CATEGORIES, Fleet
from .period import DAY_US, HOUR_US, Period, day_us, iso

NEVER = np.iinfo(np.int64).max
PRE_PRODUCTION = ["test", "staging", "dev"]
SCOPES = [("*", env) for env in PRE_PRODUCTION] + [(c, "production") for c in CATEGORIES]
REQUESTERS = ["j.hughes@contoso.com", "m.okafor@contoso.com"]
TESTERS = ["qa.lindqvist@contoso.com", "qa.tanaka@contoso.com", "qa.moreau@contoso.com"]
APPROVERS = ["cab.chair@contoso.com", "r.silva@contoso.com"]
# Planted authorization cases on the last month whose production rings run inside the period:
# case -> [(LCU product id, production category)].
PLANTED_SCOPES = {
    "illegal_transition": [("11571", "win-web"), ("12436", "win-web")],
    "approved_by_tester": [("11923", "win-app"), ("10816", "win-sql")],
    "approved_by_requester": [("11923", "win-web"), ("11571", "win-app")],
    "untested_in_production": [("12436", "win-app"), ("10816", "win-app")],
    "approved_after_install": [("11923", "win-sql"), ("11571", "win-sql")],
}
_IMPACT = {  # kind -> downtime minutes, reboot, deploy order
    "ssu": (5, "no", 1),
    "lcu": (25, "yes", 2),
    "net": (10, "maybe", 3),
    "sql": (30, "maybe", 4),
    "ubuntu": (5, "no", 5),
}


def scope_index(category: str, environment: str) -> int:
    if environment == "production":
        return SCOPES.index((category, "production"))
    return SCOPES.index(("*", environment))


@dataclass
class Plan:
    effective: np.ndarray  # (patch, scope) -> us when installs may start, NEVER if not
    blocked: np.ndarray  # (patch, scope) -> rejected or deferred: excluded from runs
    events: list[dict] = field(default_factory=list)
    tests: list[dict] = field(default_factory=list)
    incidents: list[dict] = field(default_factory=list)
    cases: list[dict] = field(default_factory=list)
    month_l: int = 0  # index in catalog.months of the planted authorization month
    rejected_patch: int = -1  # .NET update rejected for win-app production, installed by hand


def _applies(patch: Patch, category: str) -> bool:
    return category.startswith("win-") == (patch.os_type == "Windows")


def _planted_month(catalog: Catalog, period: Period) -> int:
    """The last month whose production rings (Patch Tuesday + 12 days) fall inside the period."""
    return max(
        i for i, m in enumerate(catalog.months) if day_us(m.tuesday) + 12 * DAY_US <= period.end_us
    )


def _lcu(catalog: Catalog, month_idx: int, pid: str) -> int:
    month = catalog.months[month_idx]
    return next(
        i
        for i, p in enumerate(catalog.patches)
        if p.chain == f"lcu:{pid}" and p.release_us == day_us(month.tuesday, 17)
    )


def _test_hosts(fleet: Fleet) -> dict[str, str]:
    names, cats, envs = fleet.col("name"), fleet.col("category"), fleet.col("environment")
    out = {}
    for cat in CATEGORIES:
        pool = names[(cats == cat) & np.isin(envs, ["test", "staging"])][:2]
        out[cat] = ";".join(pool) if len(pool) else f"lab-{cat}-01"
    return out


def build_plan(catalog: Catalog, fleet: Fleet, period: Period, rng: np.random.Generator) -> Plan:
    n_patches = len(catalog.patches)
    plan = Plan(
        effective=np.full((n_patches, len(SCOPES)), NEVER, dtype=np.int64),
        blocked=np.zeros((n_patches, len(SCOPES)), dtype=bool),
    )
    plan.month_l = _planted_month(catalog, period)
    planted = {
        (_lcu(catalog, plan.month_l, pid), cat): case
        for case, pairs in PLANTED_SCOPES.items()
        for pid, cat in pairs
    }
    kev_patches = {
        idx for c in catalog.cves if c.cve == catalog.kev_cve for idx in c.fixes.values()
    }
    no_pir = {(_kev_lcu(catalog, kev_patches, "11571"), "win-web"), (_kev_lcu(catalog, kev_patches, "11923"), "win-app")}
    exploited = {idx for c in catalog.cves if c.exploited for idx in c.fixes.values()}
    net = [
        i
        for i, p in enumerate(catalog.patches)
        if p.chain == "net:11923" and p.release_us <= period.end_us - 6 * DAY_US
    ]
    plan.rejected_patch = max(net, key=lambda i: catalog.patches[i].release_us)
    protected = set(planted) | {(i, c) for i in kev_patches for c in CATEGORIES}
    hosts = _test_hosts(fleet)
    ticket = 0
    for idx, patch in enumerate(catalog.patches):
        if patch.chain is None:
            continue  # out-of-band patches of the planted cases are never authorized
        r = patch.release_us
        impact = _IMPACT[patch.kind]
        deps = ""
        if patch.kind == "lcu" and patch.product_ids == ["10816"]:
            deps = ";".join(
                p.key for p in catalog.patches if p.chain == "ssu:10816" and p.release_us == r
            )
        common = {
            "patch_key": patch.key,
            "impact_downtime_minutes": impact[0],
            "impact_reboot": impact[1],
            "impact_dependencies": deps,
            "deploy_order": impact[2] + (4 if patch.package == "linux-image-azure" else 0),
        }
        for s, (cat, env) in enumerate(SCOPES):
            if cat != "*" and not _applies(patch, cat):
                continue
            ticket += 1
            case = planted.get((idx, cat)) if env == "production" else None
            emergency = idx in exploited and env == "production"
            requester = REQUESTERS[(idx + s) % 2]
            tester = TESTERS[(idx + s) % 3]
            approver = APPROVERS[(idx + s) % 2]
            scope = {
                **common,
                "asset_category": cat,
                "environment": env,
                "change_ticket": f"{'E' if emergency else ''}CHG{100000 + ticket}",
                "emergency": "true" if emergency else "false",
            }
            if env != "production":
                # The rings are the test bed: authorized within hours (test, dev) or two days.
                lag = 2 * DAY_US if env == "staging" else 3 * HOUR_US
                steps = [("", "proposed", requester, "requester", r + HOUR_US),
                         ("proposed", "in_test", tester, "tester", r + 2 * HOUR_US),
                         ("in_test", "authorized", approver, "approver", r + lag)]
                plan.effective[idx, s] = r + lag
                plan.events += _events(scope, steps, "", "")
                continue
            test_start, test_end = r + DAY_US, r + 3 * DAY_US
            failed = (idx, cat) not in protected and rng.random() < 0.02
            deferred = not failed and (idx, cat) not in protected and rng.random() < 0.02
            if idx == plan.rejected_patch and cat == "win-app":
                failed = True
            if case != "untested_in_production":
                plan.tests.append(
                    _test(plan, patch, cat, hosts[cat], tester, test_start, test_end, failed)
                )
            decided = r + (2 if emergency else 6) * DAY_US
            steps = [("", "proposed", requester, "requester", r + HOUR_US),
                     ("proposed", "in_test", tester, "tester", test_start)]
            pir = ""
            if failed or deferred:
                to = "rejected" if failed else "deferred"
                steps.append(("in_test", to, approver, "approver", r + 4 * DAY_US))
                plan.blocked[idx, s] = True
            elif case == "illegal_transition" and cat == "win-web" and patch.product_ids == ["11571"]:
                steps += [("in_test", "rejected", approver, "approver", r + 4 * DAY_US),
                          ("rejected", "authorized", approver, "approver", decided)]
            elif case == "illegal_transition":
                steps += [("in_test", "authorized", approver, "approver", r + 4 * DAY_US),
                          ("authorized", "revoked", approver, "approver", r + 5 * DAY_US),
                          ("revoked", "authorized", approver, "approver", decided)]
            else:
                if case == "approved_by_tester":
                    approver = tester
                elif case == "approved_by_requester":
                    approver = requester
                role = "cab" if emergency else "approver"
                steps.append(("in_test", "authorized", approver, role, decided))
                if emergency and (idx, cat) not in no_pir:
                    pir = iso(r + 12 * DAY_US)
            if not plan.blocked[idx, s]:
                plan.effective[idx, s] = decided
            expires = iso(decided + 180 * DAY_US) if not plan.blocked[idx, s] else ""
            plan.events += _events(scope, steps, pir, expires)
            if case or (idx, cat) in no_pir:
                plan.cases.append(
                    {
                        "case": case or "emergency_without_pir",
                        "patch_key": patch.key,
                        "asset_category": cat,
                        "environment": "production",
                        "_patch": idx,
                    }
                )
    return plan


def _kev_lcu(catalog: Catalog, kev_patches: set[int], pid: str) -> int:
    return next(i for i in kev_patches if catalog.patches[i].chain == f"lcu:{pid}")


def _events(scope: dict, steps: list[tuple], pir: str, expires: str) -> list[dict]:
    out = []
    for from_state, to_state, actor, role, at in steps:
        final = to_state == "authorized"
        out.append(
            {
                **scope,
                "from_state": from_state,
                "to_state": to_state,
                "actor": actor,
                "actor_role": role,
                "occurred_at": iso(at),
                "justification": _justification(to_state, scope),
                "pir_completed_at": pir if final else "",
                "expires_at": expires if final else "",
            }
        )
    return out


def _justification(to_state: str, scope: dict) -> str:
    return {
        "proposed": "Monthly security release; vendor severity and exposure reviewed",
        "in_test": "Deployed to the test ring for regression tests",
        "authorized": "Tests passed; approved for the scope"
        + (" as an emergency change (actively exploited)" if scope["emergency"] == "true" else ""),
        "rejected": "Regression found in testing; see the patch test and incident",
        "deferred": "Deferred to the next cycle: application owner freeze",
        "revoked": "Authorization withdrawn pending vendor known-issue review",
    }[to_state]


def _test(plan: Plan, patch: Patch, cat: str, hosts: str, tester: str, start: int, end: int, failed: bool) -> dict:
    test_id = f"TST-{len(plan.tests) + 1:05d}"
    incident = ""
    if failed:
        incident = f"INC-{len(plan.incidents) + 1:05d}"
        plan.incidents.append(
            {
                "incident_id": incident,
                "source": "vendor" if patch.os_type == "Linux" else "pss",
                "external_case_id": f"{2600000000000000 + len(plan.incidents) * 7919}",
                "patch_key": patch.key,
                "vm_id": "",
                "opened_at": iso(end - HOUR_US),
                "closed_at": iso(end + 5 * DAY_US),
                "severity": "B",
                "summary": f"{patch.title}: application regression in the {cat} test ring",
            }
        )
    return {
        "test_id": test_id,
        "patch_key": patch.key,
        "asset_category": cat,
        "environment": "staging" if cat in ("win-sql", "lnx-db") else "test",
        "hosts": hosts,
        "started_at": iso(start),
        "ended_at": iso(end),
        "result": "failed" if failed else "passed",
        "failure_reason": "Service failed to start after reboot" if failed else "",
        "incident_ids": incident,
        "tester": tester,
    }
