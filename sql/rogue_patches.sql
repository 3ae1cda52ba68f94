-- @summary Patches followed by failures, rollbacks or incidents on several VMs: defer them.
-- @group stage5_testing_authorization
-- @depends marts.authorization_status, staging.patch_observations, staging.rollbacks
-- @depends staging.support_incidents
-- @table Rogue patches as of $as_of: patches whose installs were followed by failures, rollbacks or support incidents on at least $min_vms distinct VMs within $window_days days; each gets a recommended deferral.
-- An adverse event on a VM counts when it falls within $window_days days after the first install
-- attempt of the patch on that VM (an installed, pending-reboot or failed observation). A rollback
-- counts even without an observed install: rolling back proves the patch was installed.
-- @column patch_key: KB digits (no "KB") or <package>_<version>.
-- @column affected_vms: Distinct VMs with an adverse event in the window.
-- @column failed_vms: VMs where an install of the patch failed.
-- @column rollback_vms: VMs where the patch was rolled back.
-- @column incident_vms: VMs with a support incident about the patch.
-- @column vm_ids: The affected VMs, sorted.
-- @column rollback_ids: Rollbacks counted, sorted.
-- @column incident_ids: Incidents counted, sorted.
-- @column first_adverse_at: Earliest adverse event counted (UTC).
-- @column last_adverse_at: Latest adverse event counted (UTC).
-- @column authorized_scopes: Scopes (category/environment) where the patch is authorized now; they should move to deferred.
-- @column recommendation: Always defer: move the patch to deferred in every scope and investigate.
WITH cutoff AS (
    SELECT CAST(CAST($as_of AS DATE) + INTERVAL 1 DAY AS TIMESTAMPTZ) AS at
),
observations AS (
    SELECT o.* FROM staging.patch_observations AS o, cutoff WHERE o.observed_at < cutoff.at
),
attempts AS (
    SELECT vm_id, patch_key, min(observed_at) AS first_attempt_at
    FROM observations
    WHERE state IN ('installed', 'installed_pending_reboot', 'failed')
    GROUP BY vm_id, patch_key
),
adverse AS (
    SELECT vm_id, patch_key, 'failed' AS kind, observed_at AS adverse_at, CAST(NULL AS VARCHAR) AS ref
    FROM observations WHERE state = 'failed'
    UNION ALL
    SELECT r.vm_id, r.patch_key, 'rollback', r.rolled_back_at, r.rollback_id
    FROM staging.rollbacks AS r, cutoff WHERE r.rolled_back_at < cutoff.at
    UNION ALL
    SELECT i.vm_id, i.patch_key, 'incident', i.opened_at, i.incident_id
    FROM staging.support_incidents AS i, cutoff
    WHERE i.vm_id IS NOT NULL AND i.patch_key IS NOT NULL AND i.opened_at < cutoff.at
),
counted AS (
    SELECT a.*
    FROM adverse AS a LEFT JOIN attempts AS t USING (vm_id, patch_key)
    WHERE (a.adverse_at >= t.first_attempt_at
           AND a.adverse_at <= t.first_attempt_at + to_days(CAST($window_days AS INTEGER)))
       OR (t.first_attempt_at IS NULL AND a.kind = 'rollback')
),
per_patch AS (
    SELECT patch_key,
           count(DISTINCT vm_id) AS affected_vms,
           count(DISTINCT vm_id) FILTER (WHERE kind = 'failed') AS failed_vms,
           count(DISTINCT vm_id) FILTER (WHERE kind = 'rollback') AS rollback_vms,
           count(DISTINCT vm_id) FILTER (WHERE kind = 'incident') AS incident_vms,
           list(DISTINCT vm_id ORDER BY vm_id) AS vm_ids,
           coalesce(list(DISTINCT ref ORDER BY ref) FILTER (WHERE kind = 'rollback'),
                    CAST([] AS VARCHAR[])) AS rollback_ids,
           coalesce(list(DISTINCT ref ORDER BY ref) FILTER (WHERE kind = 'incident'),
                    CAST([] AS VARCHAR[])) AS incident_ids,
           min(adverse_at) AS first_adverse_at,
           max(adverse_at) AS last_adverse_at
    FROM counted
    GROUP BY patch_key
    HAVING count(DISTINCT vm_id) >= $min_vms
)
SELECT p.patch_key, CAST(p.affected_vms AS INTEGER) AS affected_vms,
       CAST(p.failed_vms AS INTEGER) AS failed_vms,
       CAST(p.rollback_vms AS INTEGER) AS rollback_vms,
       CAST(p.incident_vms AS INTEGER) AS incident_vms,
       p.vm_ids, p.rollback_ids, p.incident_ids, p.first_adverse_at, p.last_adverse_at,
       coalesce((SELECT list(s.asset_category || '/' || s.environment
                             ORDER BY s.asset_category, s.environment)
                 FROM marts.authorization_status AS s
                 WHERE s.patch_key = p.patch_key AND s.status = 'authorized'),
                CAST([] AS VARCHAR[])) AS authorized_scopes,
       'defer' AS recommendation
FROM per_patch AS p
ORDER BY p.patch_key
