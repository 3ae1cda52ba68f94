-- @summary The patch inventory of stage 1: test outcomes, fixes, incidents, rollbacks, authorization, impact, justification and approvals per patch.
-- @group stage1_patch_inventory
-- @depends ledger.patch_tests, marts.authorization_events, marts.authorization_status
-- @depends marts.vm_inventory, staging.patch_observations, staging.patch_tests, staging.rollbacks
-- @depends staging.support_incidents
-- @table The patch inventory of stage 1 as of $as_of, one row per patch known to the registers: tests and their outcome, failed-and-never-applied or failed-then-fixed, support incidents, rollbacks, authorization status per scope, production impact, justification and approvals.
-- "Applied in production" means observed installed (or installed pending reboot) on a VM whose
-- marts.vm_inventory environment is production.
-- @column patch_key: KB digits (no "KB") or <package>_<version>.
-- @column lifecycle: failed_never_applied, failed_then_applied, tested_passed, untested, or failed_in_test (failed, later passed, not yet applied).
-- @column tests_run: Test runs recorded.
-- @column tests_failed: Failed or aborted test runs.
-- @column tested_categories: Categories with a passing test.
-- @column first_failed_at: End of the first failed or aborted test (UTC): when it failed.
-- @column failure_reasons: Distinct failure reasons of failed or aborted tests: why.
-- @column fixed_by_test_id: For failed-then-fixed patches, the first passing test after the last failure: how it was fixed.
-- @column fixed_at: End of that passing test (UTC).
-- @column first_production_install_at: First production install observed (UTC); NULL = never applied.
-- @column production_vms: Production VMs on which it was observed installed.
-- @column incident_count: Support incidents about the patch (the register's plus those named by its tests).
-- @column incident_ids: Their ids, sorted.
-- @column rollback_count: Rollbacks of the patch.
-- @column rollback_ids: Their ids, sorted.
-- @column authorization_by_scope: category/environment=status for each scope, sorted.
-- @column impact_downtime_minutes: Largest expected downtime recorded on an authorization.
-- @column impact_reboot: Strongest reboot expectation recorded (yes > maybe > no).
-- @column impact_dependencies: patch_keys to install first, over every scope.
-- @column justification: Justification of the latest authorization (or latest event with one).
-- @column approvals: approver at time (category/environment) for every authorization, in time order.
-- @column last_approved_at: Latest authorization (UTC).
WITH cutoff AS (
    SELECT CAST(CAST($as_of AS DATE) + INTERVAL 1 DAY AS TIMESTAMPTZ) AS at
),
tests AS (
    SELECT t.* FROM staging.patch_tests AS t, cutoff
    WHERE coalesce(t.ended_at, t.started_at) IS NULL OR coalesce(t.ended_at, t.started_at) < cutoff.at
),
test_summary AS (
    SELECT patch_key,
           count(*) AS tests_run,
           count(*) FILTER (WHERE result <> 'passed') AS tests_failed,
           coalesce(list(DISTINCT asset_category ORDER BY asset_category)
                        FILTER (WHERE result = 'passed'), CAST([] AS VARCHAR[])) AS tested_categories,
           min(coalesce(ended_at, started_at)) FILTER (WHERE result <> 'passed') AS first_failed_at,
           max(coalesce(ended_at, started_at)) FILTER (WHERE result <> 'passed') AS last_failed_at,
           coalesce(list(DISTINCT failure_reason ORDER BY failure_reason)
                        FILTER (WHERE result <> 'passed' AND failure_reason IS NOT NULL),
                    CAST([] AS VARCHAR[])) AS failure_reasons
    FROM tests
    GROUP BY patch_key
),
fixes AS (
    SELECT s.patch_key,
           arg_min(t.test_id, coalesce(t.ended_at, t.started_at)) AS fixed_by_test_id,
           min(coalesce(t.ended_at, t.started_at)) AS fixed_at
    FROM test_summary AS s
    JOIN tests AS t
        ON t.patch_key = s.patch_key AND t.result = 'passed'
       AND coalesce(t.ended_at, t.started_at) > s.last_failed_at
    GROUP BY s.patch_key
),
production AS (
    SELECT o.patch_key, min(o.observed_at) AS first_production_install_at,
           count(DISTINCT o.vm_id) AS production_vms
    FROM staging.patch_observations AS o
    JOIN marts.vm_inventory AS v ON v.vm_id = o.vm_id, cutoff
    WHERE o.state IN ('installed', 'installed_pending_reboot') AND v.environment = 'production'
      AND o.observed_at < cutoff.at
    GROUP BY o.patch_key
),
incidents AS (
    SELECT patch_key, list(DISTINCT incident_id ORDER BY incident_id) AS incident_ids
    FROM (
        SELECT i.patch_key, i.incident_id FROM staging.support_incidents AS i, cutoff
        WHERE i.patch_key IS NOT NULL AND i.opened_at < cutoff.at
        UNION ALL
        SELECT patch_key, unnest(incident_ids) FROM tests
    )
    GROUP BY patch_key
),
rollbacks AS (
    SELECT r.patch_key, list(r.rollback_id ORDER BY r.rollback_id) AS rollback_ids
    FROM staging.rollbacks AS r, cutoff WHERE r.rolled_back_at < cutoff.at
    GROUP BY r.patch_key
),
status AS (
    SELECT patch_key,
           list(asset_category || '/' || environment || '=' || status
                ORDER BY asset_category, environment) AS authorization_by_scope
    FROM marts.authorization_status
    GROUP BY patch_key
),
authorizations AS (
    SELECT patch_key,
           max(impact_downtime_minutes) AS impact_downtime_minutes,
           CASE max(CASE impact_reboot WHEN 'yes' THEN 3 WHEN 'maybe' THEN 2 WHEN 'no' THEN 1 END)
               WHEN 3 THEN 'yes' WHEN 2 THEN 'maybe' WHEN 1 THEN 'no' END AS impact_reboot,
           list_sort(list_distinct(flatten(list(impact_dependencies)))) AS impact_dependencies,
           list(actor || ' at ' || strftime(occurred_at, '%Y-%m-%dT%H:%M:%SZ') || ' ('
                || asset_category || '/' || environment || ')'
                ORDER BY occurred_at, event_id) AS approvals,
           max(occurred_at) AS last_approved_at
    FROM marts.authorization_events
    WHERE to_state = 'authorized'
    GROUP BY patch_key
),
justifications AS (
    SELECT patch_key,
           max_by(justification, (to_state = 'authorized', occurred_at, register_row))
               FILTER (WHERE justification IS NOT NULL) AS justification
    FROM marts.authorization_events
    GROUP BY patch_key
),
patches AS (
    SELECT patch_key FROM tests
    UNION SELECT patch_key FROM marts.authorization_events
    UNION SELECT patch_key FROM incidents
    UNION SELECT patch_key FROM rollbacks
)
SELECT
    p.patch_key,
    CASE
        WHEN coalesce(s.tests_run, 0) = 0 THEN 'untested'
        WHEN s.tests_failed = 0 THEN 'tested_passed'
        WHEN pr.first_production_install_at IS NULL AND f.fixed_at IS NULL THEN 'failed_never_applied'
        WHEN pr.first_production_install_at IS NOT NULL THEN 'failed_then_applied'
        ELSE 'failed_in_test'
    END AS lifecycle,
    CAST(coalesce(s.tests_run, 0) AS INTEGER) AS tests_run,
    CAST(coalesce(s.tests_failed, 0) AS INTEGER) AS tests_failed,
    coalesce(s.tested_categories, CAST([] AS VARCHAR[])) AS tested_categories,
    s.first_failed_at,
    coalesce(s.failure_reasons, CAST([] AS VARCHAR[])) AS failure_reasons,
    f.fixed_by_test_id, f.fixed_at,
    pr.first_production_install_at,
    CAST(coalesce(pr.production_vms, 0) AS INTEGER) AS production_vms,
    CAST(coalesce(len(i.incident_ids), 0) AS INTEGER) AS incident_count,
    coalesce(i.incident_ids, CAST([] AS VARCHAR[])) AS incident_ids,
    CAST(coalesce(len(r.rollback_ids), 0) AS INTEGER) AS rollback_count,
    coalesce(r.rollback_ids, CAST([] AS VARCHAR[])) AS rollback_ids,
    coalesce(st.authorization_by_scope, CAST([] AS VARCHAR[])) AS authorization_by_scope,
    a.impact_downtime_minutes, a.impact_reboot,
    coalesce(a.impact_dependencies, CAST([] AS VARCHAR[])) AS impact_dependencies,
    j.justification,
    coalesce(a.approvals, CAST([] AS VARCHAR[])) AS approvals,
    a.last_approved_at
FROM patches AS p
LEFT JOIN test_summary AS s USING (patch_key)
LEFT JOIN fixes AS f USING (patch_key)
LEFT JOIN production AS pr USING (patch_key)
LEFT JOIN incidents AS i USING (patch_key)
LEFT JOIN rollbacks AS r USING (patch_key)
LEFT JOIN status AS st USING (patch_key)
LEFT JOIN authorizations AS a USING (patch_key)
LEFT JOIN justifications AS j USING (patch_key)
ORDER BY p.patch_key
