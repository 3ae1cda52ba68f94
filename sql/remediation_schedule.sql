-- @table The remediation schedule: every actionable gap (authorized but missing, failed, pending reboot) placed in an occurrence of its machine's maintenance window, respecting rings, capacity, role redundancy (a role's members counted within one environment), dependency order, one reboot per machine per window and blackout dates. A patch rolled back on the machine is held (held_after_rollback) until an authorization event after the rollback authorizes it again, then scheduled as a reapply (staging.remediation_holds). Built by pipelines/scheduling.py; rows that cannot meet their due date or cannot be placed say so.
-- @column gap_id: The gap being remediated (marts.compliance_gaps).
-- @column vm_id: Machine.
-- @column vm_name: Machine name.
-- @column patch_key: Patch to install, reinstall, or whose reboot is pending.
-- @column kb: KB digits where the patch has one.
-- @column gap_type: authorized_missing, failed_reapply or pending_reboot.
-- @column action: install, reinstall, reboot, or reapply (a patch rolled back on the machine).
-- @column window_id: Maintenance window (registers/maintenance_windows.csv); NULL when unplaceable.
-- @column ring: Ring of the window: 0 test, 1 staging, 2 production, 3 critical production.
-- @column window_start: Start of the occurrence (UTC).
-- @column window_end: End of the occurrence (UTC).
-- @column sequence: Order of the step on the machine within the occurrence (the reboot follows the last step).
-- @column sla_due: Due date of the gap (earliest framework).
-- @column status: scheduled, cannot_meet_deadline (placed after its due date), unplaceable, or held_after_rollback (rolled back on the machine and not authorized again since).
-- @column reason: Why the gap is placed there, or why it cannot be.
-- @column as_of: Evaluation date.
-- @column rollback_id: The rollback (staging.rollbacks) behind a held or re-applied patch; NULL otherwise.
SELECT
    gap_id,
    vm_id,
    vm_name,
    patch_key,
    kb,
    gap_type,
    action,
    window_id,
    ring::INTEGER AS ring,
    window_start::TIMESTAMPTZ AS window_start,
    window_end::TIMESTAMPTZ AS window_end,
    sequence::INTEGER AS sequence,
    sla_due::DATE AS sla_due,
    status,
    reason,
    $as_of::DATE AS as_of,
    rollback_id::VARCHAR AS rollback_id
FROM staging.remediation_placements
ORDER BY status, window_start NULLS LAST, vm_id, sequence, gap_id
