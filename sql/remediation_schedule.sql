-- @table The remediation schedule: every actionable gap (authorized but missing, failed, pending reboot) placed in an occurrence of its machine's maintenance window (its InGuestPatch maintenance configuration, when Azure Update Manager runs, else the register window its tag names), respecting rings, capacity, role redundancy (a role's members counted within one environment), dependency order, one reboot per machine per window and blackout dates. A patch rolled back on the machine is held (held_after_rollback) until an authorization event after the rollback authorizes it again, then scheduled as a reapply (staging.remediation_holds). A production step whose machine is not expected to have a recovery point no older than the rollback-readiness limit at the window start (marts.vm_rollback_readiness) is needs_restore_point, with a proposed on-demand backup before the window; the policy can ask for that backup before every production window of a criticality (pre_window_backup). Built by pipelines/scheduling.py; rows that cannot meet their due date or cannot be placed say so.
-- @column gap_id: The gap being remediated (marts.compliance_gaps).
-- @column vm_id: Machine.
-- @column vm_name: Machine name.
-- @column patch_key: Patch to install, reinstall, or whose reboot is pending.
-- @column kb: KB digits where the patch has one.
-- @column gap_type: authorized_missing, failed_reapply or pending_reboot.
-- @column action: install, reinstall, reboot, or reapply (a patch rolled back on the machine).
-- @column window_id: The window of the occurrence (marts.vm_maintenance_windows): the lower-case ARM id of the machine's InGuestPatch maintenance configuration (staging.maintenance_configuration_windows), else the register window of its maintenance-window tag (registers/maintenance_windows.csv); NULL when unplaceable.
-- @column ring: Ring of the window: 0 test, 1 staging, 2 production, 3 critical production.
-- @column window_start: Start of the occurrence (UTC).
-- @column window_end: End of the occurrence (UTC).
-- @column sequence: Order of the step on the machine within the occurrence (the reboot follows the last step).
-- @column sla_due: Due date of the gap (earliest framework).
-- @column status: scheduled, cannot_meet_deadline (placed after its due date), unplaceable, held_after_rollback (rolled back on the machine and not authorized again since), or needs_restore_point (a production step placed in a window at whose start no recovery point younger than the policy limit is expected: take an on-demand backup or VM restore point first).
-- @column reason: Why the gap is placed there, or why it cannot be.
-- @column as_of: Evaluation date.
-- @column rollback_id: The rollback (staging.rollbacks) behind a held or re-applied patch; NULL otherwise.
-- @column outside_configuration: True when the step is in a maintenance configuration's occurrence but the patch's classification is not among the configuration's classificationsToInclude for the machine's OS: Azure Update Manager will not install it in that run unless the configuration is changed (the reason says so).
-- @column pre_window_backup: True when the schedule proposes an on-demand backup (or VM restore point) of the machine in the max_age_hours before the window start: the step needs a restore point, or the policy asks for one before every production window.
WITH
steps AS (
    SELECT
        p.*,
        i.environment = 'production' AND p.status IN ('scheduled', 'cannot_meet_deadline') AS production_step,
        r.readiness, r.reason AS readiness_reason, r.max_age_hours, r.pre_window_backup AS policy_backup,
        -- Fresh at the start: regular backups are expected, or a point already lies within the limit.
        r.readiness = 'ready'
            OR r.last_point_at >= p.window_start::TIMESTAMPTZ - to_seconds(CAST(r.max_age_hours * 3600 AS BIGINT))
            AS point_expected
    FROM staging.remediation_placements AS p
    LEFT JOIN marts.vm_inventory AS i USING (vm_id)
    LEFT JOIN marts.vm_rollback_readiness AS r USING (vm_id)
),
-- A configuration installs only the classifications it includes for the machine's OS.
classified AS (
    SELECT s.*, c.classification,
           CASE WHEN i.os_type = 'Linux' THEN w.linux_classifications ELSE w.windows_classifications END AS included
    FROM steps AS s
    LEFT JOIN marts.vm_inventory AS i USING (vm_id)
    LEFT JOIN staging.maintenance_configuration_windows AS w USING (window_id)
    LEFT JOIN marts.patch_catalog AS c USING (patch_key)
),
checked AS (
    SELECT *, coalesce(action <> 'reboot' AND NOT list_contains(included, classification), false) AS outside_configuration
    FROM classified
)
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
    CASE WHEN production_step AND NOT coalesce(point_expected, false) THEN 'needs_restore_point' ELSE status END
        AS status,
    CASE
        WHEN production_step AND NOT coalesce(point_expected, false)
            THEN reason || '; no recovery point younger than ' || coalesce(max_age_hours, 0) || ' h expected at the window start ('
                 || coalesce(readiness || ': ' || readiness_reason, 'no readiness known') || '): take an on-demand backup or VM restore point after '
                 || strftime(window_start::TIMESTAMPTZ - to_seconds(CAST(coalesce(max_age_hours, 0) * 3600 AS BIGINT)), '%Y-%m-%d %H:%M')
                 || ' UTC, before the window'
        WHEN production_step AND policy_backup
            THEN reason || '; policy: on-demand backup in the ' || max_age_hours || ' h before the window'
        ELSE reason
    END || CASE WHEN outside_configuration
        THEN '; classification ' || classification || ' is not in the configuration''s classificationsToInclude ('
             || array_to_string(included, ', ') || '): Azure Update Manager will not install it in this run unless the configuration includes it'
        ELSE '' END AS reason,
    $as_of::DATE AS as_of,
    rollback_id::VARCHAR AS rollback_id,
    outside_configuration,
    coalesce(production_step AND (NOT coalesce(point_expected, false) OR policy_backup), false) AS pre_window_backup
FROM checked
ORDER BY status, window_start NULLS LAST, vm_id, sequence, gap_id
