-- @summary The authorization event log with each event's place in the state machine (sql/authorization_events.sql holds the table of legal transitions).
-- @group stage5_testing_authorization
-- @depends ledger.authorization_events, staging.authorization_events, staging.patch_observations
-- @table The authorization event log as of $as_of, one row per event, with its place in its scope's state machine and whether the transition is legal.
-- A scope is (patch_key, asset_category, environment). Events are ordered by occurred_at, then
-- by their row in the register (the register is append-only). An authorization whose expires_at
-- has passed counts as `expired` when the next event happens.
--
-- Legal transitions (from -> to); anything else is an `illegal_transition` finding:
--   (none)     -> proposed
--   proposed   -> in_test, rejected, deferred
--   in_test    -> authorized, rejected, deferred, proposed
--   deferred   -> proposed, in_test
--   authorized -> revoked, expired
--   rejected   -> proposed
--   revoked    -> proposed
--   expired    -> proposed
-- @column authorization_event_id: Stable id: sha256 of 'authorization_events|' and event_id.
-- @column event_id: Event id from the register.
-- @column patch_key: KB digits (no "KB") or <package>_<version>.
-- @column asset_category: Scope: a category id or *.
-- @column environment: Scope: production, staging, test, dev or *.
-- @column scope_seq: 1 for the scope's first event, then 2, 3, ...
-- @column from_state: State the event says it leaves (NULL for a first event).
-- @column to_state: State the event enters.
-- @column previous_state: State the scope was actually in before the event (expired when the last authorization's expires_at had passed); NULL before the first event.
-- @column from_state_matches: from_state equals previous_state (both NULL for a first event).
-- @column transition_legal: previous_state -> to_state is in the table of legal transitions.
-- @column actor: Who made the transition.
-- @column actor_role: requester, tester, approver or cab.
-- @column occurred_at: When (UTC).
-- @column requester: Actor of the scope's latest proposed event at or before this one.
-- @column justification: Why.
-- @column impact_downtime_minutes: Expected downtime.
-- @column impact_reboot: yes, no or maybe.
-- @column impact_dependencies: patch_keys to install first.
-- @column deploy_order: Order within a maintenance window.
-- @column change_ticket: ITSM change id.
-- @column emergency: Emergency change (NULL = not stated, read as false).
-- @column pir_completed_at: Post-implementation review time (UTC).
-- @column expires_at: End of the authorization (UTC).
-- @column register_row: Row in registers/authorization_events.csv.
WITH legal(from_state, to_state) AS (
    VALUES ('(none)', 'proposed'),
           ('proposed', 'in_test'), ('proposed', 'rejected'), ('proposed', 'deferred'),
           ('in_test', 'authorized'), ('in_test', 'rejected'), ('in_test', 'deferred'),
           ('in_test', 'proposed'),
           ('deferred', 'proposed'), ('deferred', 'in_test'),
           ('authorized', 'revoked'), ('authorized', 'expired'),
           ('rejected', 'proposed'), ('revoked', 'proposed'), ('expired', 'proposed')
),
events AS (
    SELECT *,
           row_number() OVER scope_order AS scope_seq,
           lag(to_state) OVER scope_order AS previous_to_state,
           lag(expires_at) OVER scope_order AS previous_expires_at,
           last_value(CASE WHEN to_state = 'proposed' THEN actor END IGNORE NULLS) OVER (
               scope_order ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS requester
    FROM staging.authorization_events
    WHERE occurred_at < CAST(CAST($as_of AS DATE) + INTERVAL 1 DAY AS TIMESTAMPTZ)
    WINDOW scope_order AS (
        PARTITION BY patch_key, asset_category, environment ORDER BY occurred_at, register_row)
),
stated AS (
    SELECT *,
           CASE WHEN previous_to_state = 'authorized' AND previous_expires_at <= occurred_at
                THEN 'expired' ELSE previous_to_state END AS previous_state
    FROM events
)
SELECT
    sha256('authorization_events|' || s.event_id) AS authorization_event_id,
    s.event_id, s.patch_key, s.asset_category, s.environment,
    CAST(s.scope_seq AS INTEGER) AS scope_seq,
    s.from_state, s.to_state, s.previous_state,
    s.from_state IS NOT DISTINCT FROM s.previous_state AS from_state_matches,
    l.to_state IS NOT NULL AS transition_legal,
    s.actor, s.actor_role, s.occurred_at, s.requester, s.justification,
    s.impact_downtime_minutes, s.impact_reboot, s.impact_dependencies, s.deploy_order,
    s.change_ticket, s.emergency, s.pir_completed_at, s.expires_at, s.register_row
FROM stated AS s
LEFT JOIN legal AS l
    ON l.from_state = coalesce(s.previous_state, '(none)') AND l.to_state = s.to_state
ORDER BY s.patch_key, s.asset_category, s.environment, s.scope_seq
