-- @summary Current authorization state per patch x category x environment (contract in docs/architecture.md).
-- @group stage5_testing_authorization
-- @depends marts.authorization_events
-- @table The current authorization state of each patch for each scope (patch_key x asset_category x environment) as of $as_of.
-- The status is the to_state of the scope's latest event, except that an authorization whose
-- expires_at has passed by the end of $as_of is `expired` (status_since = expires_at).
-- @column patch_key: KB digits (no "KB") or <package>_<version>.
-- @column asset_category: Category id or * (every category).
-- @column environment: Environment or * (every environment).
-- @column status: proposed, in_test, authorized, deferred, rejected, revoked or expired.
-- @column status_since: Time of the event that set the status (expires_at for a lapsed authorization).
-- @column authorized_at: First transition to authorized; NULL if never.
-- @column requester: Actor of the scope's latest proposed event.
-- @column approver: Actor of the scope's latest transition to authorized; NULL if never authorized.
-- @column change_ticket: Latest ITSM change id recorded for the scope.
-- @column emergency: Latest emergency flag recorded for the scope (false when never stated).
-- @column deploy_order: Latest deploy order recorded for the scope.
-- @column impact_dependencies: Latest non-empty list of patch_keys to install first (empty if none).
WITH scoped AS (
    SELECT
        patch_key, asset_category, environment,
        max_by(to_state, scope_seq) AS latest_state,
        max_by(occurred_at, scope_seq) AS latest_at,
        max_by(expires_at, scope_seq) AS latest_expires_at,
        min(occurred_at) FILTER (WHERE to_state = 'authorized') AS authorized_at,
        max_by(actor, scope_seq) FILTER (WHERE to_state = 'proposed') AS requester,
        max_by(actor, scope_seq) FILTER (WHERE to_state = 'authorized') AS approver,
        max_by(change_ticket, scope_seq) FILTER (WHERE change_ticket IS NOT NULL) AS change_ticket,
        max_by(emergency, scope_seq) FILTER (WHERE emergency IS NOT NULL) AS emergency,
        max_by(deploy_order, scope_seq) FILTER (WHERE deploy_order IS NOT NULL) AS deploy_order,
        max_by(impact_dependencies, scope_seq) FILTER (WHERE len(impact_dependencies) > 0)
            AS impact_dependencies
    FROM marts.authorization_events
    GROUP BY patch_key, asset_category, environment
),
lapsed AS (
    SELECT *,
           latest_state = 'authorized'
           AND latest_expires_at < CAST(CAST($as_of AS DATE) + INTERVAL 1 DAY AS TIMESTAMPTZ)
               AS has_lapsed
    FROM scoped
)
SELECT
    patch_key, asset_category, environment,
    CASE WHEN has_lapsed THEN 'expired' ELSE latest_state END AS status,
    CASE WHEN has_lapsed THEN latest_expires_at ELSE latest_at END AS status_since,
    authorized_at, requester, approver, change_ticket,
    coalesce(emergency, false) AS emergency,
    deploy_order,
    coalesce(impact_dependencies, CAST([] AS VARCHAR[])) AS impact_dependencies
FROM lapsed
ORDER BY patch_key, asset_category, environment
