-- @table The state changes of each patch on each machine up to the end of $as_of (marts.vm_patch_history): one row per machine, patch and instant whose winning observation (the same winner as marts.vm_patch_state: at the same instant installation results > assessments > Log Analytics) has another state than the previous instant's, with the fix lineage of its KB (marts.patch_fix_lineage; a patch without one is its own lineage). marts.remediation_episodes reads these instead of every observation. Kept day by day: a build replaces the days from $from_day, each pair continuing from its last change before them (kept_changes); a full build ($from_day NULL) reads every day.
-- @column vm_id: Canonical machine id.
-- @column patch_key: KB digits, or <package>_<version>.
-- @column kb: KB of the winning observation.
-- @column lineage_id: Fix lineage of that KB, or the patch's own KB or patch_key without one.
-- @column state: The state from this instant on.
-- @column observed_at: The instant.
WITH
params AS (
    SELECT timezone('UTC', (CAST($as_of AS DATE) + 1)::TIMESTAMP) AS cutoff,
           timezone('UTC', CAST($from_day AS DATE)::TIMESTAMP) AS from_ts
),
-- One state per machine, patch and instant (an aggregate, not a row_number() window: sorting each
-- instant's rows cost the most of the episodes' build).
events AS (
    SELECT vm_id, patch_key, w.kb, w.lineage_id, w.state, observed_at
    FROM (
        SELECT
            h.vm_id,
            h.patch_key,
            h.observed_at,
            arg_min({'kb': h.kb, 'lineage_id': coalesce(l.lineage_id, h.kb, h.patch_key), 'state': h.state},
                    (source_rank(h.source), h.state, h.run_id, h.source_file)) AS w
        FROM marts.vm_patch_history AS h
        LEFT JOIN marts.patch_fix_lineage AS l ON l.kb = h.kb
        CROSS JOIN params
        WHERE h.observed_at < params.cutoff
          AND h.observed_at >= coalesce(params.from_ts, '-infinity'::TIMESTAMPTZ)
        GROUP BY h.vm_id, h.patch_key, h.observed_at
    )
),
-- An incremental build: the state each pair observed on the days recomputed had before them (its
-- last kept change; none for a full build).
kept_state AS (
    SELECT vm_id, patch_key, arg_max({'state': state}, observed_at).state AS state
    FROM kept_changes SEMI JOIN (SELECT DISTINCT vm_id, patch_key FROM events) USING (vm_id, patch_key)
    GROUP BY vm_id, patch_key
),
sequenced AS (
    SELECT
        e.*,
        CASE WHEN row_number() OVER pair = 1 THEN k.state ELSE lag(e.state) OVER pair END AS previous_state
    FROM events AS e
    LEFT JOIN kept_state AS k USING (vm_id, patch_key)
    WINDOW pair AS (PARTITION BY e.vm_id, e.patch_key ORDER BY e.observed_at)
)
SELECT vm_id, patch_key, kb, lineage_id, state, observed_at
FROM sequenced
WHERE previous_state IS DISTINCT FROM state
ORDER BY vm_id, patch_key, observed_at
