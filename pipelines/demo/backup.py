"""The demo's Azure Backup and VM restore points (azure/backup/, docs/estate.md).

Every production Azure VM is protected by one Recovery Services vault with a daily policy
(02:00 UTC), except the planted machines below; other environments are not backed up. Five
weekly captures of the protected items (the last on the final day, 06:00 UTC) and the vault's
recovery points listed on the final day (five weeks of daily points; from the first day for the
machine of rollback RB-0001) give the backup history. Planted (docs/demo-estate.md):

  backup_fresh             protected, last backup on the final day 02:00: ready
  backup_stale             protected, no backup since 9 days before the final day: stale
  backup_failed            protected, backups failing for the last 3 days: last_backup_failed
  backup_never             never protected: production_unprotected
  backup_restore_point     never in a vault, one VM restore point on the final day 00:00
  rollback_1 (RB-0001)     protected: the rolled-back install had a recovery point
  rollback_2 (RB-0002)     never protected: rollback_without_recovery_point
"""

from __future__ import annotations

import json
from datetime import date, datetime, time, timedelta
from pathlib import Path

from .fleet import Fleet
from .period import Period

PLANTED = ("backup_fresh", "backup_stale", "backup_failed", "backup_never", "backup_restore_point")
ITEM_TYPE = "Microsoft.RecoveryServices/vaults/backupFabrics/protectionContainers/protectedItems"


def _at(day: date, hour: int) -> str:
    return datetime.combine(day, time(hour)).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_backup(root: Path, fleet: Fleet, period: Period) -> tuple[int, list[dict]]:
    """azure/backup/*.json; returns the number of recovery points and the planted cases."""
    folder = root / "azure" / "backup"
    folder.mkdir(parents=True, exist_ok=True)
    arm, key, env, kind = (fleet.col(c) for c in ("arm_id", "vm_key", "environment", "kind"))
    taken = set(fleet.slots.values())
    production = [i for i in range(len(fleet)) if kind[i] == "azure_vm" and env[i] == "production"]
    free = [i for i in production if i not in taken]
    # A small fleet may lack a machine for a case, which is then not planted.
    slots = dict(zip(PLANTED, free, strict=False))
    slots["rollback_1"], slots["rollback_2"] = fleet.slots["rollback_1"], fleet.slots["rollback_2"]
    unprotected = {slots[s] for s in ("backup_never", "backup_restore_point", "rollback_2") if s in slots}
    protected = sorted((set(production) | {slots["rollback_1"]}) - unprotected)
    subscription = arm[protected[0]].split("/")[2]
    vault = f"/subscriptions/{subscription}/resourceGroups/rg-backup/providers/Microsoft.RecoveryServices/vaults/rsv-prd"
    policy_id = f"{vault}/backupPolicies/DailyPolicy"
    end = period.end

    def last_good(vm: int, day: date) -> date:
        """The day of the last successful backup a capture on `day` shows."""
        if vm == slots.get("backup_stale"):
            return min(day, end - timedelta(days=9))
        if vm == slots.get("backup_failed"):
            return min(day, end - timedelta(days=3))
        return day

    def item_id(vm: int) -> str:
        container = f"iaasvmcontainerv2;{arm[vm].split('/')[4].lower()};{arm[vm].split('/')[-1]}"
        return f"{vault}/backupFabrics/Azure/protectionContainers/{container}/protectedItems/vm;{container}"

    def item(vm: int, day: date) -> dict:
        good = last_good(vm, day)
        failing = vm == slots.get("backup_failed") and day > good
        properties = {
            "friendlyName": arm[vm].split("/")[-1], "virtualMachineId": arm[vm], "sourceResourceId": arm[vm],
            "protectedItemType": "Microsoft.Compute/virtualMachines", "backupManagementType": "AzureIaasVM",
            "workloadType": "VM", "protectionState": "Protected",
            "protectionStatus": "Unhealthy" if failing else "Healthy",
            "healthStatus": "ActionRequired" if failing else "Passed",
            "lastBackupStatus": "Failed" if failing else "Completed",
            "lastBackupTime": _at(day if failing else good, 2), "lastRecoveryPoint": _at(good, 2),
            "policyId": policy_id, "policyName": "DailyPolicy",
        }
        return {"id": item_id(vm), "name": item_id(vm).rsplit("/", 1)[1], "type": ITEM_TYPE, "properties": properties}

    for weeks in range(4, -1, -1):
        day = end - timedelta(weeks=weeks)
        body = {"value": [item(vm, day) for vm in protected]}
        (folder / f"protected_items-{day:%Y%m%d}T060000Z.json").write_text(json.dumps(body), encoding="utf-8")
    policy = {"id": policy_id, "name": "DailyPolicy", "type": "Microsoft.RecoveryServices/vaults/backupPolicies",
              "properties": {"backupManagementType": "AzureIaasVM", "protectedItemsCount": len(protected),
                             "schedulePolicy": {"schedulePolicyType": "SimpleSchedulePolicy",
                                                "scheduleRunFrequency": "Daily",
                                                "scheduleRunTimes": [_at(period.start, 2)]}}}
    (folder / "backup_policies.json").write_text(json.dumps({"value": [policy]}), encoding="utf-8")
    points = []
    for vm in protected:
        first = period.start if vm == slots["rollback_1"] else end - timedelta(days=34)
        day = first
        while day <= last_good(vm, end):
            points.append({"id": f"{item_id(vm)}/recoveryPoints/{day:%Y%m%d}", "name": f"{day:%Y%m%d}",
                           "type": f"{ITEM_TYPE}/recoveryPoints",
                           "properties": {"objectType": "IaasVMRecoveryPoint", "recoveryPointType": "AppConsistent",
                                          "recoveryPointTime": _at(day, 2)}})
            day += timedelta(days=1)
    (folder / f"recovery_points-{end:%Y%m%d}T060000Z.json").write_text(json.dumps({"value": points}),
                                                                        encoding="utf-8")
    restore = []
    if "backup_restore_point" in slots:
        rp_vm = slots["backup_restore_point"]
        collection = (arm[rp_vm].split("/providers/")[0] + "/providers/Microsoft.Compute/restorePointCollections/rpc-"
                      + arm[rp_vm].split("/")[-1])
        restore.append({
            "id": collection, "name": collection.rsplit("/", 1)[1], "type": "Microsoft.Compute/restorePointCollections",
            "properties": {"source": {"id": arm[rp_vm]}, "provisioningState": "Succeeded", "restorePoints": [
                {"id": f"{collection}/restorePoints/pre-patch", "name": "pre-patch",
                 "properties": {"timeCreated": _at(end, 0), "consistencyMode": "CrashConsistent",
                                "provisioningState": "Succeeded"}}]}})
    (folder / "restore_point_collections.json").write_text(json.dumps({"value": restore}), encoding="utf-8")
    notes = {
        "backup_fresh": "protected, daily, last backup on the final day 02:00 UTC: ready",
        "backup_stale": f"protected, last recovery point {end - timedelta(days=9)} 02:00 UTC: stale",
        "backup_failed": f"protected, backups failed since {end - timedelta(days=2)}, last point "
                         f"{end - timedelta(days=3)} 02:00 UTC: last_backup_failed",
        "backup_never": "production, never protected: production_unprotected",
        "backup_restore_point": f"never in a vault, VM restore point {end} 00:00 UTC: production_unprotected",
        "rollback_1": "protected since the first day: RB-0001 had a recovery point before the install",
        "rollback_2": "never protected: RB-0002 had no recovery point (rollback_without_recovery_point)",
    }
    cases = [{"case": slot if slot.startswith("backup_") else f"backup_{slot}", "vm_id": str(key[vm]),
              "patch_key": None, "expected_state": None, "expected_gap_type": None, "note": notes[slot]}
             for slot, vm in slots.items()]
    return len(points), cases
