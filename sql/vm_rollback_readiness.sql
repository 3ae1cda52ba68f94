-- @summary Per machine: protected or not, the last recovery point and its age, the backup policy's
-- @summary frequency and the readiness policy's limit, and whether a fresh point is expected before a
-- @summary window.
-- @group stage6_patch_monitoring
-- @depends marts.vm_inventory, staging.backup_policies, staging.backup_protected_items
-- @depends staging.backup_recovery_points, staging.rollback_policy
-- @table Rollback readiness per machine as of $as_of: whether Azure Backup protects it, its last recovery point (Azure Backup or VM restore point) up to the end of the evaluation date, the point's age when the machine's latest backup capture was taken, the backup policy's frequency and the limit of the rollback-readiness policy (pipelines/config/rollback_readiness.yaml, per criticality). A machine is ready when it is protected, its last backup completed, its last point is no older than the limit and its policy backs up at least as often as the limit: a fresh point is then expected before any window. Readiness: ready, stale, last_backup_failed, policy_too_infrequent, unprotected (protection stopped or paused, or no item in force), never_protected (no capture ever lists it).
-- @column vm_id: Machine (marts.vm_inventory).
-- @column name: Machine name.
-- @column environment: Environment tag.
-- @column criticality: Criticality tag (the policy's default applies when NULL).
-- @column protected: True when the latest protected-item capture up to the evaluation date has the machine in state Protected, IRPending or ProtectionError.
-- @column protection_state: protectionState of that item; NULL when none.
-- @column health_status: healthStatus (or protectionStatus) of that item.
-- @column last_backup_status: lastBackupStatus of that item (Completed, Failed, ...).
-- @column last_backup_at: lastBackupTime of that item (UTC): the last attempt.
-- @column last_point_at: Newest recovery point up to the end of the evaluation date (staging.backup_recovery_points), NULL when none.
-- @column point_kind: vault_backup or restore_point.
-- @column observed_at: When the machine's backup state was last seen: the latest capture's time (the end of the evaluation date for an undated file or without an item).
-- @column point_age_hours: Hours from last_point_at to observed_at, one decimal; NULL without a point.
-- @column policy_name: Backup policy of the item.
-- @column frequency_hours: Hours between the policy's scheduled backups (staging.backup_policies, latest capture up to the evaluation date); NULL when the policy is not in the estate.
-- @column max_age_hours: The limit: the oldest a recovery point may be at a production window's start.
-- @column pre_window_backup: True when the policy asks for an on-demand backup before every production window of the machine's criticality.
-- @column readiness: ready, stale, last_backup_failed, policy_too_infrequent, unprotected or never_protected (see the table comment).
-- @column reason: Why, with the figures.
-- @column as_of: Evaluation date.
WITH
params AS (
    SELECT CAST($as_of AS DATE) AS as_of, timezone('UTC', (CAST($as_of AS DATE) + 1)::TIMESTAMP) AS cutoff
),
item AS (
    SELECT b.* FROM staging.backup_protected_items AS b, params AS p
    WHERE b.captured_at IS NULL OR b.captured_at < p.cutoff
    QUALIFY row_number() OVER (PARTITION BY b.vm_id ORDER BY b.captured_at DESC NULLS LAST, b.item_id) = 1
),
policy AS (
    SELECT b.* FROM staging.backup_policies AS b, params AS p
    WHERE b.captured_at IS NULL OR b.captured_at < p.cutoff
    QUALIFY row_number() OVER (PARTITION BY b.policy_id ORDER BY b.captured_at DESC NULLS LAST, b.source_file DESC) = 1
),
point AS (
    SELECT r.vm_id, max(r.point_at) AS last_point_at, arg_max(r.kind, r.point_at) AS point_kind
    FROM staging.backup_recovery_points AS r, params AS p
    WHERE r.point_at < p.cutoff
    GROUP BY r.vm_id
),
joined AS (
    SELECT
        v.vm_id, v.name, v.environment, v.criticality,
        coalesce(i.protection_state IN ('Protected', 'IRPending', 'ProtectionError'), false) AS protected,
        i.item_id IS NOT NULL AS ever_listed,
        i.protection_state, i.health_status, i.last_backup_status, i.last_backup_at,
        pt.last_point_at, pt.point_kind,
        coalesce(i.captured_at, p.cutoff) AS observed_at,
        i.policy_name, pol.frequency_hours,
        coalesce(c.max_age_hours, d.max_age_hours) AS max_age_hours,
        coalesce(c.pre_window_backup, d.pre_window_backup) AS pre_window_backup,
        p.as_of
    FROM marts.vm_inventory AS v
    CROSS JOIN params AS p
    LEFT JOIN item AS i USING (vm_id)
    LEFT JOIN point AS pt USING (vm_id)
    LEFT JOIN policy AS pol ON pol.policy_id = i.policy_id
    LEFT JOIN staging.rollback_policy AS c ON c.criticality = v.criticality
    LEFT JOIN staging.rollback_policy AS d ON d.criticality = 'default'
),
aged AS (
    SELECT *, round(date_diff('second', last_point_at, observed_at) / 3600.0, 1) AS point_age_hours
    FROM joined
)
SELECT
    vm_id, name, environment, criticality, protected, protection_state, health_status,
    last_backup_status, last_backup_at, last_point_at, point_kind, observed_at, point_age_hours,
    policy_name, frequency_hours, max_age_hours, pre_window_backup,
    CASE
        WHEN NOT ever_listed THEN 'never_protected'
        WHEN NOT protected THEN 'unprotected'
        WHEN last_backup_status IS DISTINCT FROM 'Completed' THEN 'last_backup_failed'
        WHEN last_point_at IS NULL OR point_age_hours > max_age_hours THEN 'stale'
        WHEN frequency_hours IS NULL OR frequency_hours > max_age_hours THEN 'policy_too_infrequent'
        ELSE 'ready'
    END AS readiness,
    CASE
        WHEN NOT ever_listed THEN 'no Azure Backup protected item lists the machine'
        WHEN NOT protected THEN 'protection state ' || coalesce(protection_state, 'unknown') || ': no new backups'
        WHEN last_backup_status IS DISTINCT FROM 'Completed'
            THEN 'last backup ' || coalesce(last_backup_status, 'status unknown') || ' at '
                 || coalesce(strftime(last_backup_at, '%Y-%m-%d %H:%M'), '?') || ' UTC'
        WHEN last_point_at IS NULL THEN 'protected but no recovery point yet'
        WHEN point_age_hours > max_age_hours
            THEN 'last recovery point ' || point_age_hours || ' h old on ' || strftime(observed_at, '%Y-%m-%d %H:%M')
                 || ' UTC, limit ' || max_age_hours || ' h'
        WHEN frequency_hours IS NULL THEN 'backup policy ' || coalesce(policy_name, '?') || ' not in the estate: frequency unknown'
        WHEN frequency_hours > max_age_hours
            THEN 'policy ' || policy_name || ' backs up every ' || frequency_hours || ' h, limit ' || max_age_hours || ' h'
        ELSE 'last recovery point ' || point_age_hours || ' h old, policy every ' || frequency_hours || ' h'
    END AS reason,
    as_of
FROM aged
ORDER BY vm_id
