-- @table Patches rolled back on a machine (staging.rollbacks) up to the evaluation date: the schedule holds such a patch on that machine (status held_after_rollback) until an authorization event that occurred after the rollback authorizes it again for the machine's scope (its category or *, its environment or *); from then on it is scheduled as a re-apply. Only the newest rollback of a patch on a machine counts.
-- @column vm_id: Machine.
-- @column patch_key: The rolled-back patch.
-- @column rollback_id: The newest rollback of the patch on the machine.
-- @column rolled_back_at: When it was rolled back (UTC).
-- @column reauthorized_at: First authorization of the patch for the machine's scope after the rollback (up to the end of the evaluation date); NULL while the hold stands.
-- @column reauthorization_event_id: The event that re-authorized it.
WITH
params AS (
    SELECT timezone('UTC', (CAST($as_of AS DATE) + 1)::TIMESTAMP) AS cutoff
),
rollbacks AS (
    SELECT r.vm_id, r.patch_key, r.rollback_id, r.rolled_back_at
    FROM staging.rollbacks AS r, params
    WHERE r.rolled_back_at < params.cutoff
    QUALIFY row_number() OVER (
        PARTITION BY r.vm_id, r.patch_key ORDER BY r.rolled_back_at DESC, r.rollback_id DESC
    ) = 1
),
reauthorized AS (
    SELECT
        r.vm_id,
        r.patch_key,
        min(e.occurred_at) AS reauthorized_at,
        arg_min(e.event_id, (e.occurred_at, e.event_id)) AS reauthorization_event_id
    FROM rollbacks AS r
    JOIN marts.vm_inventory AS i USING (vm_id)
    JOIN staging.authorization_events AS e
      ON e.patch_key = r.patch_key
     AND e.to_state = 'authorized'
     AND e.asset_category IN (i.asset_category, '*')
     AND e.environment IN (i.environment, '*')
     AND e.occurred_at > r.rolled_back_at
    CROSS JOIN params
    WHERE e.occurred_at < params.cutoff
    GROUP BY r.vm_id, r.patch_key
)
SELECT
    r.vm_id,
    r.patch_key,
    r.rollback_id,
    r.rolled_back_at,
    a.reauthorized_at,
    a.reauthorization_event_id
FROM rollbacks AS r
LEFT JOIN reauthorized AS a USING (vm_id, patch_key)
ORDER BY r.vm_id, r.patch_key
