-- @summary Production installs before approval or without a test, and rogue patches.
-- @group stage5_testing_authorization
-- @depends ledger.patch_tests, marts.authorization_events, marts.rogue_patches, marts.vm_inventory
-- @depends staging.patch_observations, staging.patch_tests
-- @table Findings of stage 5 that need install data, as of $as_of: production installs before approval or without a test, and rogue patches.
-- A production install is the first observation of the patch as installed (or installed pending
-- reboot) on a VM whose marts.vm_inventory environment is production. The scopes that cover it are
-- (its asset_category or *) x (production or *). Rules:
--   install_before_approval          high    no covering scope was authorized (and unexpired) when the install was first observed
--   production_install_without_test  high    no passing test of the patch in the VM's category ended before the install,
--                                            unless a covering authorization in force was an emergency change
--   rogue_patch                      high    marts.rogue_patches recommends deferring the patch
-- @column finding_id: Stable id: sha256 of rule, '|' and subject.
-- @column rule: The rule that found it (list in the table header).
-- @column severity: high, medium or low.
-- @column subject: vm/<vm_id>/patch/<patch_key>, or patch/<patch_key> for rogue patches.
-- @column patch_key: The patch.
-- @column asset_category: The VM's category (NULL for rogue patches).
-- @column environment: production (NULL for rogue patches).
-- @column vm_id: The VM (NULL for rogue patches).
-- @column criteria: The requirement, with its source.
-- @column condition: What was found, in one sentence.
-- @column evidence: JSON with the ids and times the condition rests on.
WITH cutoff AS (
    SELECT CAST(CAST($as_of AS DATE) + INTERVAL 1 DAY AS TIMESTAMPTZ) AS at
),
installs AS (
    SELECT o.vm_id, o.patch_key, v.asset_category, min(o.observed_at) AS installed_at,
           arg_min(o.source, o.observed_at) AS source, arg_min(o.run_id, o.observed_at) AS run_id
    FROM staging.patch_observations AS o
    JOIN marts.vm_inventory AS v ON v.vm_id = o.vm_id, cutoff
    WHERE o.state IN ('installed', 'installed_pending_reboot') AND v.environment = 'production'
      AND o.observed_at < cutoff.at
    GROUP BY o.vm_id, o.patch_key, v.asset_category
),
scope_at_install AS (
    -- The latest event of every covering scope at the install time.
    SELECT i.vm_id, i.patch_key, e.event_id, e.to_state, e.emergency,
           e.to_state = 'authorized' AND (e.expires_at IS NULL OR e.expires_at > i.installed_at)
               AS in_force
    FROM installs AS i
    JOIN marts.authorization_events AS e
        ON e.patch_key = i.patch_key
       AND e.asset_category IN (i.asset_category, '*')
       AND e.environment IN ('production', '*')
       AND e.occurred_at <= i.installed_at
    QUALIFY row_number() OVER (
        PARTITION BY i.vm_id, i.patch_key, e.asset_category, e.environment
        ORDER BY e.scope_seq DESC) = 1
),
approval AS (
    SELECT i.vm_id, i.patch_key,
           coalesce(bool_or(s.in_force), false) AS approved,
           coalesce(bool_or(s.in_force AND coalesce(s.emergency, false)), false) AS emergency,
           list(s.event_id ORDER BY s.event_id) FILTER (WHERE s.in_force) AS approving_events,
           (SELECT min(e.occurred_at) FROM marts.authorization_events AS e
            WHERE e.patch_key = i.patch_key AND e.to_state = 'authorized'
              AND e.asset_category IN (i.asset_category, '*')
              AND e.environment IN ('production', '*')
              AND e.occurred_at > i.installed_at) AS authorized_later_at
    FROM installs AS i
    LEFT JOIN scope_at_install AS s USING (vm_id, patch_key)
    GROUP BY i.vm_id, i.patch_key, i.asset_category, i.installed_at
),
tested AS (
    SELECT i.vm_id, i.patch_key, list(t.test_id ORDER BY t.test_id) AS passing_tests
    FROM installs AS i
    JOIN staging.patch_tests AS t
        ON t.patch_key = i.patch_key AND t.asset_category = i.asset_category
       AND t.result = 'passed' AND coalesce(t.ended_at, t.started_at) <= i.installed_at
    GROUP BY i.vm_id, i.patch_key
),
findings AS (
    SELECT 'install_before_approval' AS rule, 'high' AS severity,
           'vm/' || i.vm_id || '/patch/' || i.patch_key AS subject,
           i.patch_key, i.asset_category, 'production' AS environment, i.vm_id,
           'SOX ITGC approval before implementation: a change is approved before it reaches production' AS criteria,
           CASE WHEN a.authorized_later_at IS NULL
                THEN format('patch {} was installed on {} by {} and was never authorized for it',
                            i.patch_key, i.vm_id, strftime(i.installed_at, '%Y-%m-%dT%H:%M:%SZ'))
                ELSE format('patch {} was installed on {} by {}, before its authorization on {}',
                            i.patch_key, i.vm_id, strftime(i.installed_at, '%Y-%m-%dT%H:%M:%SZ'),
                            strftime(a.authorized_later_at, '%Y-%m-%dT%H:%M:%SZ'))
           END AS condition,
           json_object('installed_at', i.installed_at, 'source', i.source, 'run_id', i.run_id,
                       'authorized_later_at', a.authorized_later_at) AS evidence
    FROM installs AS i JOIN approval AS a USING (vm_id, patch_key)
    WHERE NOT a.approved

    UNION ALL
    SELECT 'production_install_without_test', 'high',
           'vm/' || i.vm_id || '/patch/' || i.patch_key,
           i.patch_key, i.asset_category, 'production', i.vm_id,
           'SOX ITGC testing evidence; NIST SP 800-53 SI-2(b): a change is tested before production',
           format('patch {} was installed on {} by {} without a passing test in category {} before it',
                  i.patch_key, i.vm_id, strftime(i.installed_at, '%Y-%m-%dT%H:%M:%SZ'),
                  coalesce(i.asset_category, '(none)')),
           json_object('installed_at', i.installed_at, 'source', i.source, 'run_id', i.run_id,
                       'approving_events', a.approving_events)
    FROM installs AS i
    JOIN approval AS a USING (vm_id, patch_key)
    LEFT JOIN tested AS t USING (vm_id, patch_key)
    WHERE t.passing_tests IS NULL AND NOT a.emergency

    UNION ALL
    SELECT 'rogue_patch', 'high', 'patch/' || patch_key, patch_key, NULL, NULL, NULL,
           format('Rogue patch: installs followed by failures, rollbacks or incidents on at least {} VMs within {} days',
                  $min_vms, $window_days),
           format('patch {} had adverse events on {} VMs ({} failed, {} rolled back, {} with incidents); defer it',
                  patch_key, affected_vms, failed_vms, rollback_vms, incident_vms),
           json_object('vm_ids', vm_ids, 'rollback_ids', rollback_ids, 'incident_ids', incident_ids,
                       'first_adverse_at', first_adverse_at, 'last_adverse_at', last_adverse_at,
                       'authorized_scopes', authorized_scopes)
    FROM marts.rogue_patches
)
SELECT sha256(rule || '|' || subject) AS finding_id, rule, severity, subject, patch_key,
       asset_category, environment, vm_id, criteria, condition, CAST(evidence AS VARCHAR) AS evidence
FROM findings
ORDER BY rule, subject
