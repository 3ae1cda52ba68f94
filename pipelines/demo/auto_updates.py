"""Patch settings over time for the automatic-updates control (docs/demo-estate.md).

Writes the dated inventory snapshots' patch settings, the maintenance configurations and their
assignments (azure/maintenance/), and the policy's production scopes and exceptions
(policy/automatic_updates.yaml). Planted, on machines picked deterministically from the fleet:

  switched_to_manual          a production Windows VM on AutomaticByOS switches to Manual at the
                              third snapshot (its Windows Update agent, if it reports to Log
                              Analytics, says Manual from then on)
  promoted_to_production      a dev Windows VM on AutomaticByOS whose environment tag becomes
                              production at the second snapshot
  platform_autopatch          a production VM on AutomaticByPlatform, no schedule, no bypass
  platform_schedule_no_bypass a production VM on AutomaticByPlatform assigned to a schedule but
                              without bypassPlatformSafetyChecksOnUserSchedule (still autopatched)
  exception_valid             a production AutomaticByOS VM covered by an approved exception
  exception_self_approved     a production AutomaticByOS VM whose exception its requester approved

Every other VM on AutomaticByPlatform has the bypass set and an assignment to the maintenance
configuration of its maintenance-window tag; VMs on the legacy agent keep AutomaticByOS (Windows)
or ImageDefault (Linux). Planted for the schedule (MAINTENANCE_CASES):

  maintenance_tag_disagrees   tagged mw-prod-sa, assigned to the configuration mw-prod-su
  maintenance_azure_only      no maintenance-window tag, assigned to aum-prod-patch-thursday
                              (1Month Second Tuesday Offset2, W. Europe Standard Time; no register
                              window of that name)
  maintenance_unscheduled     no tag and no assignment (legacy agent)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from .fleet import WINDOWS, Fleet
from .period import HOUR_US, Period, day_us

SNAPSHOT_HOUR = 6
CONFIG_RG = "rg-patching"
# IANA -> Windows time-zone names, as maintenance configurations state them.
_WINDOWS_TZ = {"UTC": "UTC", "Europe/London": "GMT Standard Time"}
_ORDINAL = {"+1": "First", "+2": "Second", "+3": "Third", "+4": "Fourth", "-1": "Last"}
_DAY = {"MO": "Monday", "TU": "Tuesday", "WE": "Wednesday", "TH": "Thursday", "FR": "Friday",
        "SA": "Saturday", "SU": "Sunday"}
# An InGuestPatch window lasts at most 3 h 55 min.
MAX_WINDOW_MINUTES = 235


@dataclass
class AutoUpdatePlan:
    days: list[date]
    settings: pd.DataFrame  # one row per snapshot and VM: vm, snapshot, patch_mode, enable_au, bypass, environment
    wu_manual_from_us: np.ndarray  # per VM: when its Windows Update agent reports Manual
    assigned: np.ndarray  # per VM: on its window's maintenance configuration
    slots: dict[str, int] = field(default_factory=dict)
    maintenance: dict[str, int] = field(default_factory=dict)  # MAINTENANCE_CASES -> VM


def snapshot_days(period: Period) -> list[date]:
    return sorted({period.start + timedelta(days=period.days * k // 3) for k in range(3)} | {period.end})


def snapshot_us(day: date) -> int:
    return day_us(day) + SNAPSHOT_HOUR * HOUR_US


def _pick(fleet: Fleet, taken: set[int], **where) -> int | None:
    """The first Azure VM (by position, those on the legacy agent first) matching `where` and not
    planted elsewhere; None when a small fleet has none (the case is then not planted)."""
    mask = fleet.col("kind") == "azure_vm"
    for column, value in where.items():
        mask &= fleet.col(column) == value
    candidates = sorted(np.nonzero(mask)[0], key=lambda vm: (fleet.col("source")[vm] != "la", vm))
    for vm in candidates:
        if int(vm) not in taken:
            taken.add(int(vm))
            return int(vm)
    return None


# Planted machines that run Windows Automatic Updates (AutomaticByOS) whatever agent they report to.
_BY_OS = ("switched_to_manual", "promoted_to_production", "exception_valid", "exception_self_approved")


def plan_auto_updates(fleet: Fleet, period: Period) -> AutoUpdatePlan:
    days = snapshot_days(period)
    n = len(fleet)
    taken = set(fleet.slots.values())
    picks = {
        "switched_to_manual": _pick(fleet, taken, os_type="Windows", environment="production"),
        "promoted_to_production": _pick(fleet, taken, os_type="Windows", environment="dev"),
        "platform_autopatch": _pick(fleet, taken, source="rg", environment="production"),
        "platform_schedule_no_bypass": _pick(fleet, taken, source="rg", environment="production"),
        "exception_valid": _pick(fleet, taken, os_type="Windows", environment="production"),
        "exception_self_approved": _pick(fleet, taken, os_type="Windows", environment="production"),
    }
    slots = {slot: vm for slot, vm in picks.items() if vm is not None}
    windows = fleet.col("os_type") == "Windows"
    by_os = fleet.col("source") == "la"
    by_os[[slots[s] for s in _BY_OS if s in slots]] = True
    platform = ~by_os
    bypass = platform.copy()
    bypass[[slots[s] for s in ("platform_autopatch", "platform_schedule_no_bypass") if s in slots]] = False
    assigned = platform.copy()
    assigned[[slots[s] for s in ("platform_autopatch",) if s in slots]] = False
    wu_manual_from_us = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
    switch = 2 if len(days) > 2 else len(days) - 1
    switched, promoted = slots.get("switched_to_manual"), slots.get("promoted_to_production")
    if switched is not None:
        wu_manual_from_us[switched] = snapshot_us(days[switch])

    frames = []
    for k, day in enumerate(days):
        patch_mode = np.where(platform, "AutomaticByPlatform", np.where(windows, "AutomaticByOS", "ImageDefault"))
        # AutomaticByOS and AutomaticByPlatform need enableAutomaticUpdates true, Manual false.
        enable_au = windows.copy()
        environment = fleet.col("environment").copy()
        if switched is not None and k >= switch:
            patch_mode[switched] = "Manual"
            enable_au[switched] = False
        if promoted is not None:
            environment[promoted] = "dev" if k < 1 else "production"
        frames.append(pd.DataFrame({
            "vm": np.arange(n), "snapshot": k, "captured_us": snapshot_us(day),
            "patch_mode": patch_mode.astype(object), "enable_au": enable_au, "bypass": bypass,
            "environment": environment.astype(object),
        }))
    return AutoUpdatePlan(days=days, settings=pd.concat(frames, ignore_index=True),
                          wu_manual_from_us=wu_manual_from_us, assigned=assigned, slots=slots)


# case: (what _pick matches, note). Assigned VMs are those on AutomaticByPlatform (source rg).
MAINTENANCE_CASES = {
    "maintenance_tag_disagrees": (
        {"source": "rg", "environment": "production", "window": "mw-prod-sa"},
        "tag mw-prod-sa, assigned to configuration mw-prod-su: scheduled in mw-prod-su, finding maintenance_tag_disagrees"),
    "maintenance_azure_only": (
        {"source": "rg", "environment": "production"},
        "no tag, assigned to aum-prod-patch-thursday (two days after Patch Tuesday, 03:00 Berlin): "
        "scheduled there with the production defaults"),
    "maintenance_unscheduled": (
        {"source": "la", "environment": "test"},
        "no tag and no assignment: marts.unscheduled_machines, finding machine_unscheduled"),
}
AZURE_ONLY_CONFIGURATION = ("aum-prod-patch-thursday", "1Month Second Tuesday Offset2", "03:00", "03:00",
                            "W. Europe Standard Time")


def plan_maintenance(fleet: Fleet, plan: AutoUpdatePlan) -> list[dict]:
    """Pick the MAINTENANCE_CASES machines and set the fleet's `window_tag` (the tag written:
    its window, none for the untagged cases). Returns the cases for demo_truth.json."""
    taken = set(fleet.slots.values()) | set(plan.slots.values())
    for case, (where, _note) in MAINTENANCE_CASES.items():
        vm = _pick(fleet, taken, **where)
        if vm is not None:
            plan.maintenance[case] = vm
    tag = fleet.col("window").copy()
    tag[[plan.maintenance[c] for c in ("maintenance_azure_only", "maintenance_unscheduled")
         if c in plan.maintenance]] = None
    fleet.vms["window_tag"] = tag
    key = fleet.col("vm_key")
    return [{"case": case, "vm_id": str(key[vm]), "patch_key": None, "expected_state": None,
             "expected_gap_type": None, "note": MAINTENANCE_CASES[case][1]} for case, vm in plan.maintenance.items()]


def _recur_every(rrule: str) -> str:
    parts = dict(p.split("=") for p in rrule.split(";"))
    if parts["FREQ"] == "DAILY":
        return "1Day"
    if parts["FREQ"] == "WEEKLY":
        return "1Week " + ", ".join(_DAY[d] for d in parts["BYDAY"].split(","))
    by = parts["BYDAY"]
    return f"1Month {_ORDINAL[by[:-2]]} {_DAY[by[-2:]]}"


def _configuration_id(subscription: str, window_id: str) -> str:
    return (f"/subscriptions/{subscription}/resourceGroups/{CONFIG_RG}/providers/"
            f"Microsoft.Maintenance/maintenanceConfigurations/{window_id}")


def write_maintenance(root: Path, fleet: Fleet, plan: AutoUpdatePlan, period: Period) -> int:
    """azure/maintenance/maintenance_configurations.json and configuration_assignments.json (ARM
    list bodies, API 2023-04-01 shapes): one InGuestPatch configuration per maintenance window."""
    folder = root / "azure" / "maintenance"
    folder.mkdir(parents=True, exist_ok=True)
    subscription = fleet.subscriptions[2]
    configurations = []
    for window_id, name, rrule, start, minutes, tz, *_ in WINDOWS:
        configurations.append({
            "id": _configuration_id(subscription, window_id),
            "name": window_id,
            "type": "Microsoft.Maintenance/maintenanceConfigurations",
            "location": "westeurope",
            "tags": {"description": name},
            "properties": {
                "namespace": "Microsoft.Maintenance",
                "maintenanceScope": "InGuestPatch",
                "visibility": "Custom",
                "maintenanceWindow": {
                    "startDateTime": f"{period.start.isoformat()} {start}",
                    "expirationDateTime": None,
                    "duration": f"{min(minutes, MAX_WINDOW_MINUTES) // 60:02d}:{min(minutes, MAX_WINDOW_MINUTES) % 60:02d}",
                    "timeZone": _WINDOWS_TZ[tz],
                    "recurEvery": _recur_every(rrule),
                },
                "installPatches": {
                    "rebootSetting": "IfRequired",
                    "windowsParameters": {"classificationsToInclude": ["Critical", "Security"],
                                          "kbNumbersToExclude": [], "excludeKbsRequiringReboot": False},
                    "linuxParameters": {"classificationsToInclude": ["Critical", "Security"],
                                        "packageNameMasksToExclude": []},
                },
                "extensionProperties": {"InGuestPatchMode": "User"},
            },
        })
    name, recur, start, duration, zone = AZURE_ONLY_CONFIGURATION
    configurations.append({**configurations[-1], "id": _configuration_id(subscription, name), "name": name,
                           "tags": {"description": "Production, two days after Patch Tuesday"},
                           "properties": {**configurations[-1]["properties"], "maintenanceWindow": {
                               "startDateTime": f"{period.start.isoformat()} {start}", "expirationDateTime": None,
                               "duration": duration, "timeZone": zone, "recurEvery": recur}}})
    assignments = []
    arm_id, location = fleet.col("arm_id"), fleet.col("location")
    window = fleet.col("window").copy()
    for case, configuration in (("maintenance_tag_disagrees", "mw-prod-su"), ("maintenance_azure_only", name)):
        if case in plan.maintenance:
            window[plan.maintenance[case]] = configuration
    for vm in np.nonzero(plan.assigned)[0]:
        assignments.append({
            "id": f"{arm_id[vm]}/providers/Microsoft.Maintenance/configurationAssignments/{window[vm]}",
            "name": str(window[vm]),
            "type": "Microsoft.Maintenance/configurationAssignments",
            "location": str(location[vm]),
            "properties": {"maintenanceConfigurationId": _configuration_id(subscription, window[vm]),
                           "resourceId": str(arm_id[vm])},
        })
    for name, rows in (("maintenance_configurations", configurations), ("configuration_assignments", assignments)):
        (folder / f"{name}.json").write_text(json.dumps({"value": rows}, indent=1), encoding="utf-8")
    return len(assignments)


def write_policy(root: Path, fleet: Fleet, plan: AutoUpdatePlan, period: Period) -> list[dict]:
    """policy/automatic_updates.yaml: on-premises servers are production (no tags), one valid and
    one self-approved exception. Returns the planted cases for demo_truth.json."""
    folder = root / "policy"
    folder.mkdir(parents=True, exist_ok=True)
    key = fleet.col("vm_key")
    approved = f"{(period.start - timedelta(days=10)).isoformat()}T09:00:00Z"
    expires = f"{(period.end + timedelta(days=90)).isoformat()}T00:00:00Z"
    exceptions = [
        {"exception_id": exception_id, "vm_id": str(key[plan.slots[slot]]), "reason": reason,
         "requested_by": "app-services@contoso.com", "approver": approver, "approved_at": approved,
         "expires_at": expires, "status": "active"}
        for exception_id, slot, reason, approver in (
            ("AU-EX-001", "exception_valid", "Vendor-managed appliance: the vendor requires Windows Update on",
             "ciso@contoso.com"),
            ("AU-EX-002", "exception_self_approved", "Kiosk build server", "app-services@contoso.com"),
        )
        if slot in plan.slots
    ]
    document = {"production_environments": ["production"], "production_scopes": ["nonazure/"],
                "exceptions": exceptions}
    (folder / "automatic_updates.yaml").write_text(
        "# Demo policy for the automatic-updates control (docs/estate.md).\n"
        + yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    notes = {
        "switched_to_manual": "AutomaticByOS until the third snapshot, then Manual: a violation period that ends there",
        "promoted_to_production": "dev with AutomaticByOS (allowed), production from the second snapshot (violation)",
        "platform_autopatch": "AutomaticByPlatform, no bypass, no assignment: Azure autopatch (violation)",
        "platform_schedule_no_bypass": "AutomaticByPlatform with an assignment but no bypass: still autopatched (violation)",
        "exception_valid": "AutomaticByOS covered by exception AU-EX-001 (excepted)",
        "exception_self_approved": "AutomaticByOS, exception AU-EX-002 approved by its requester (violation, invalid exception)",
    }
    return [{"case": f"auto_updates_{slot}", "vm_id": str(key[vm]), "patch_key": None, "expected_state": None,
             "expected_gap_type": None, "note": notes[slot],
             "snapshots": [d.isoformat() for d in plan.days]} for slot, vm in plan.slots.items()]


