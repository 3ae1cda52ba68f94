-- @summary Production machines without backup, production installs without a recent recovery point,
-- @summary and rollbacks with no recovery point to roll back to.
-- @group stage6_patch_monitoring
-- @depends marts.vm_patch_history, marts.vm_rollback_readiness, staging.rollbacks
-- @table Findings of the rollback-readiness control as of $as_of (docs/estate.md, "Azure Backup and restore points"), one row per finding with criteria, condition, cause, effect and recommendation; carried into marts.audit_findings. Rules:
--   production_unprotected                     high  a production machine that Azure Backup does not protect (never protected, or protection stopped or paused) as of the evaluation date
--   production_install_without_recovery_point  high  a patch installed on a production machine (a state change to installed in marts.vm_patch_history) with no recovery point of the machine in the policy limit before the install; installs before the first backup capture of the estate are not judged (no backup history)
--   rollback_without_recovery_point            high  a rollback in registers/rollbacks.csv with no recovery point of the machine taken before the rolled-back install (before the rollback when the install is not in the history)
-- @column finding_id: Stable id: sha256 of rule, '|' and subject.
-- @column rule: The rule (list in the table header).
-- @column severity: high.
-- @column subject: vm/<vm_id>, vm/<vm_id>/patch/<patch_key>, or rollback/<rollback_id>.
-- @column patch_key: The patch (install and rollback rules).
-- @column asset_category: The machine's asset category.
-- @column environment: The machine's environment tag.
-- @column vm_id: The machine.
-- @column criteria: The requirement, with its source.
-- @column condition: What was found, with the times and the limit.
-- @column evidence: JSON with the times, ids and the last recovery point the condition rests on.
-- @column cause: Why it usually happens.
-- @column effect: The risk.
-- @column recommendation: What to do.
WITH
params AS (
    SELECT CAST($as_of AS DATE) AS as_of, timezone('UTC', (CAST($as_of AS DATE) + 1)::TIMESTAMP) AS cutoff
),
criteria(text) AS (
    VALUES ('Patch process: untested or rogue patches must be rolled back by restoring the Azure VM to an earlier restore point, which needs regular backups of the VMs (Azure Recovery Services vaults or System Center DPM); NIST SP 800-53 CP-9, CP-10; SOX ITGC change management (back-out plan)')
),
points AS (
    SELECT r.* FROM staging.backup_recovery_points AS r, params AS p WHERE r.point_at < p.cutoff
),
coverage AS (  -- backup history starts with the estate's first dated capture (undated files: the first point)
    SELECT coalesce(
        (SELECT min(captured_at) FROM staging.backup_protected_items),
        (SELECT min(point_at) FROM points)) AS since
),
machines AS (
    SELECT r.*, v.asset_category FROM marts.vm_rollback_readiness AS r JOIN marts.vm_inventory AS v USING (vm_id)
),
installs AS (
    SELECT h.vm_id, h.patch_key, min(h.observed_at) AS installed_at
    FROM marts.vm_patch_history AS h
    JOIN machines AS m USING (vm_id)
    CROSS JOIN coverage AS c
    WHERE m.environment = 'production'
      AND h.state IN ('installed', 'installed_pending_reboot')
      AND h.previous_state IS NOT NULL AND h.previous_state NOT IN ('installed', 'installed_pending_reboot')
      AND h.observed_at >= c.since
    GROUP BY h.vm_id, h.patch_key
),
install_points AS (
    SELECT i.*, m.max_age_hours, m.name, m.environment, m.asset_category,
           (SELECT max(p.point_at) FROM points AS p WHERE p.vm_id = i.vm_id AND p.point_at <= i.installed_at) AS point_before
    FROM installs AS i JOIN machines AS m USING (vm_id)
),
rollbacks AS (
    SELECT r.rollback_id, r.vm_id, r.patch_key, r.rolled_back_at,
           (SELECT max(h.observed_at) FROM marts.vm_patch_history AS h
            WHERE h.vm_id = r.vm_id AND h.patch_key = r.patch_key AND h.observed_at <= r.rolled_back_at
              AND h.state IN ('installed', 'installed_pending_reboot')
              AND (h.previous_state IS NULL OR h.previous_state NOT IN ('installed', 'installed_pending_reboot')))
              AS installed_at
    FROM staging.rollbacks AS r, params AS p
    WHERE r.rolled_back_at < p.cutoff
),
rollback_points AS (
    SELECT b.*, m.name, m.environment, m.asset_category,
           (SELECT max(p.point_at) FROM points AS p
            WHERE p.vm_id = b.vm_id AND p.point_at <= coalesce(b.installed_at, b.rolled_back_at)) AS point_before
    FROM rollbacks AS b LEFT JOIN machines AS m USING (vm_id)
),
findings AS (
    SELECT 'production_unprotected' AS rule, 'high' AS severity, 'vm/' || vm_id AS subject, NULL::VARCHAR AS patch_key,
           asset_category, environment, vm_id,
           format('{} (production, criticality {}) has no Azure Backup protection as of {}: {}',
                  name, coalesce(criticality, 'unset'), (SELECT as_of FROM params), reason) AS condition,
           json_object('readiness', readiness, 'protection_state', protection_state,
                       'last_point_at', last_point_at) AS evidence
    FROM machines
    WHERE environment = 'production' AND readiness IN ('never_protected', 'unprotected')
    UNION ALL
    SELECT 'production_install_without_recovery_point', 'high', 'vm/' || vm_id || '/patch/' || patch_key, patch_key,
           asset_category, environment, vm_id,
           format('{} installed {} at {} UTC with no recovery point in the {} h before (last point {})',
                  name, patch_key, strftime(installed_at, '%Y-%m-%d %H:%M'), max_age_hours,
                  coalesce(strftime(point_before, '%Y-%m-%d %H:%M') || ' UTC', 'none')),
           json_object('installed_at', installed_at, 'point_before', point_before, 'max_age_hours', max_age_hours)
    FROM install_points
    WHERE point_before IS NULL OR point_before < installed_at - to_seconds(CAST(max_age_hours * 3600 AS BIGINT))
    UNION ALL
    SELECT 'rollback_without_recovery_point', 'high', 'rollback/' || rollback_id, patch_key,
           asset_category, environment, vm_id,
           format('Rollback {} of {} on {} at {} UTC: no recovery point of the machine before {} ({})',
                  rollback_id, patch_key, coalesce(name, vm_id), strftime(rolled_back_at, '%Y-%m-%d %H:%M'),
                  CASE WHEN installed_at IS NULL THEN 'the rollback' ELSE 'the install' END,
                  coalesce(strftime(installed_at, '%Y-%m-%d %H:%M') || ' UTC', strftime(rolled_back_at, '%Y-%m-%d %H:%M') || ' UTC')),
           json_object('rollback_id', rollback_id, 'rolled_back_at', rolled_back_at, 'installed_at', installed_at)
    FROM rollback_points
    WHERE point_before IS NULL
),
explained(rule, cause, effect, recommendation) AS (
    VALUES
        ('production_unprotected', 'The machine was never enrolled in a Recovery Services vault, or its protection was stopped.',
         'A failed or rogue patch cannot be undone by restoring the machine; the only way back is a rebuild.',
         'Enable Azure Backup (or DPM) with a policy at least as frequent as the rollback-readiness limit.'),
        ('production_install_without_recovery_point', 'The patch window ran without a fresh backup (backup failed, stale, or none), and no on-demand backup or restore point was taken first.',
         'The change had no tested way back at the time it was made.',
         'Take an on-demand backup or VM restore point before each production window; block the window when none is fresh.'),
        ('rollback_without_recovery_point', 'The rollback was done without a restore point (uninstall, or manual repair).',
         'The rollback may not have restored the earlier state; the machine''s state after it is unverified.',
         'Verify the machine against its baseline and protect it before the next change.')
)
SELECT sha256(f.rule || '|' || f.subject) AS finding_id, f.rule, f.severity, f.subject, f.patch_key,
       f.asset_category, f.environment, f.vm_id, (SELECT text FROM criteria) AS criteria, f.condition,
       f.evidence, x.cause, x.effect, x.recommendation
FROM findings AS f JOIN explained AS x USING (rule)
ORDER BY f.rule, f.subject
