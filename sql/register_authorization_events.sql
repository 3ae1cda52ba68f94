-- @table Authorization events (registers/authorization_events.csv): the append-only log of each patch's authorization state machine per scope.
-- @column event_id: Event id (unique).
-- @column patch_key: KB digits (no "KB") or <package>_<version>.
-- @column asset_category: Scope: a category id or * (every category).
-- @column environment: Scope: production, staging, test, dev or * (every environment).
-- @column from_state: State before the transition; NULL for the first event of a scope.
-- @column to_state: proposed, in_test, authorized, deferred, rejected, revoked or expired.
-- @column actor: Who made the transition.
-- @column actor_role: requester, tester, approver or cab.
-- @column occurred_at: When (UTC).
-- @column justification: Why the patch should (or should not) go to production.
-- @column impact_downtime_minutes: Expected downtime.
-- @column impact_reboot: yes, no or maybe.
-- @column impact_dependencies: patch_keys that must be installed first.
-- @column deploy_order: Order within a maintenance window.
-- @column change_ticket: ITSM change id.
-- @column emergency: Emergency change (needs a post-implementation review); NULL when not stated.
-- @column pir_completed_at: Post-implementation review of an emergency change (UTC).
-- @column expires_at: End of an authorization (UTC); the state becomes expired after it.
-- @column register_row: Row in the register file (1 = first data row).
-- @column source_file: The estate file the row came from.
SELECT
    trim(event_id) AS event_id,
    regexp_replace(trim(patch_key), '^[Kk][Bb](\d+)$', '\1') AS patch_key,
    trim(asset_category) AS asset_category,
    lower(trim(environment)) AS environment,
    nullif(lower(trim(from_state)), '') AS from_state,
    lower(trim(to_state)) AS to_state,
    trim(actor) AS actor,
    lower(trim(actor_role)) AS actor_role,
    CAST(trim(occurred_at) AS TIMESTAMPTZ) AS occurred_at,
    nullif(trim(justification), '') AS justification,
    CAST(nullif(trim(impact_downtime_minutes), '') AS INTEGER) AS impact_downtime_minutes,
    nullif(lower(trim(impact_reboot)), '') AS impact_reboot,
    [regexp_replace(trim(d), '^[Kk][Bb](\d+)$', '\1')
        FOR d IN string_split(impact_dependencies, ';') IF trim(d) <> ''] AS impact_dependencies,
    CAST(nullif(trim(deploy_order), '') AS INTEGER) AS deploy_order,
    nullif(trim(change_ticket), '') AS change_ticket,
    CAST(nullif(lower(trim(emergency)), '') AS BOOLEAN) AS emergency,
    CAST(nullif(trim(pir_completed_at), '') AS TIMESTAMPTZ) AS pir_completed_at,
    CAST(nullif(trim(expires_at), '') AS TIMESTAMPTZ) AS expires_at,
    CAST(_row AS INTEGER) AS register_row,
    source_file
FROM raw.register_authorization_events
