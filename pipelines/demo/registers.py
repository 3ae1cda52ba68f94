"""The organisation's registers (docs/estate.md "Registers"): CSV with exactly those headers."""

from __future__ import annotations

import csv
from pathlib import Path

from .authz import Plan
from .cases import Planted
from .catalog import Catalog
from .fleet import BLACKOUTS, CATEGORY, WINDOWS
from .period import Period, day_us

HEADERS = {
    "asset_categories": ["category_id", "name", "description", "criticality", "rule_order",
                         "tag_key", "tag_value", "os_type"],
    "baselines": ["baseline_id", "category_id", "requirement", "item", "min_version", "effective_from"],
    "patch_tests": ["test_id", "patch_key", "asset_category", "environment", "hosts", "started_at",
                    "ended_at", "result", "failure_reason", "incident_ids", "tester"],
    "authorization_events": ["event_id", "patch_key", "asset_category", "environment", "from_state",
                             "to_state", "actor", "actor_role", "occurred_at", "justification",
                             "impact_downtime_minutes", "impact_reboot", "impact_dependencies",
                             "deploy_order", "change_ticket", "emergency", "pir_completed_at",
                             "expires_at"],
    "exceptions": ["exception_id", "vm_id", "asset_category", "patch_key", "cve", "reason",
                   "compensating_control", "risk_owner", "requested_by", "approver", "approved_at",
                   "expires_at", "status"],
    "support_incidents": ["incident_id", "source", "external_case_id", "patch_key", "vm_id",
                          "opened_at", "closed_at", "severity", "summary"],
    "rollbacks": ["rollback_id", "vm_id", "patch_key", "rolled_back_at", "reason", "incident_id", "actor"],
    "maintenance_windows": ["window_id", "name", "rrule", "start_time", "duration_minutes", "time_zone",
                            "ring", "environment", "capacity_vms", "max_role_share"],
    "blackout_dates": ["blackout_id", "starts_on", "ends_on", "environment", "reason"],
}
_CATEGORY_TEXT = {
    "win-web": ("Windows web servers", "IIS front ends", "high"),
    "win-app": ("Windows application servers", "Line-of-business application tier", "high"),
    "win-sql": ("Windows SQL Server", "SQL Server 2022 database servers", "critical"),
    "win-dc": ("Domain controllers", "Active Directory domain controllers", "critical"),
    "lnx-web": ("Linux web servers", "nginx front ends on Ubuntu", "high"),
    "lnx-app": ("Linux application servers", "Application tier on Ubuntu", "medium"),
    "lnx-db": ("Linux databases", "PostgreSQL on Ubuntu", "critical"),
}


def _write(folder: Path, name: str, rows: list[dict]) -> int:
    with open(folder / f"{name}.csv", "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=HEADERS[name], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)


def _baselines(catalog: Catalog, period: Period) -> list[dict]:
    """Per Windows category: a build floor two months behind, and the latest SSU."""
    floor_month = catalog.months[-3]
    rows = []
    ssu = max((p for p in catalog.patches if p.kind == "ssu"), key=lambda p: p.release_us)
    lcu = {p.product_ids[0]: p for p in catalog.patches
           if p.kind == "lcu" and p.release_us == day_us(floor_month.tuesday, 17)}
    for cat in sorted(set(CATEGORY.values())):
        if cat.startswith("win-"):
            for pid, patch in sorted(lcu.items()):
                name = {"10816": "Windows Server 2016", "11571": "Windows Server 2019",
                        "11923": "Windows Server 2022", "12436": "Windows Server 2025"}[pid]
                rows.append({"category_id": cat, "requirement": "os_build", "item": name,
                             "min_version": patch.fixed_build})
            rows.append({"category_id": cat, "requirement": "patch", "item": ssu.key, "min_version": ""})
            rows.append({"category_id": cat, "requirement": "software", "item": ".NET Framework",
                         "min_version": "4.8"})
        else:
            rows.append({"category_id": cat, "requirement": "os_build", "item": "Ubuntu",
                         "min_version": "22.04"})
            rows.append({"category_id": cat, "requirement": "software", "item": "openssl",
                         "min_version": "3.0.2-0ubuntu1.15"})
    for n, row in enumerate(rows, start=1):
        row["baseline_id"] = f"BL-{n:04d}"
        row["effective_from"] = floor_month.tuesday.isoformat()
    return rows


def write_registers(root: Path, catalog: Catalog, plan: Plan, planted: Planted, period: Period) -> dict[str, int]:
    folder = root / "registers"
    folder.mkdir(parents=True, exist_ok=True)
    categories = [
        {"category_id": cat, "name": _CATEGORY_TEXT[cat][0], "description": _CATEGORY_TEXT[cat][1],
         "criticality": _CATEGORY_TEXT[cat][2], "rule_order": 10 * (n + 1), "tag_key": "role",
         "tag_value": role, "os_type": os_type}
        for n, ((os_type, role), cat) in enumerate(sorted(CATEGORY.items(), key=lambda kv: kv[1]))
    ]
    events = sorted(plan.events, key=lambda e: (e["occurred_at"], e["patch_key"], e["asset_category"],
                                                e["environment"], e["to_state"]))
    for n, event in enumerate(events, start=1):
        event["event_id"] = f"AUTH-{n:06d}"
    windows = [
        dict(zip(HEADERS["maintenance_windows"], w[:10], strict=True)) for w in WINDOWS
    ]
    blackouts = [dict(zip(HEADERS["blackout_dates"], b, strict=True)) for b in BLACKOUTS]
    return {
        "asset_categories": _write(folder, "asset_categories", categories),
        "baselines": _write(folder, "baselines", _baselines(catalog, period)),
        "patch_tests": _write(folder, "patch_tests", plan.tests),
        "authorization_events": _write(folder, "authorization_events", events),
        "exceptions": _write(folder, "exceptions", planted.exceptions),
        "support_incidents": _write(folder, "support_incidents", plan.incidents + planted.incidents),
        "rollbacks": _write(folder, "rollbacks", planted.rollbacks),
        "maintenance_windows": _write(folder, "maintenance_windows", windows),
        "blackout_dates": _write(folder, "blackout_dates", blackouts),
    }
