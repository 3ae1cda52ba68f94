-- @table Chronological patch history per machine up to the end of the evaluation date: one row per observation or inferred event of staging.patch_observations, with the previous state of the same patch so that changes (missing -> installed, failed -> installed on retry, installed -> missing after a rollback) can be read directly.
-- @column vm_id: Canonical machine id.
-- @column event_seq: Position of the event in the machine's history (1 = oldest); ties at the same time ordered by source precedence, then patch.
-- @column patch_key: KB digits, or <package>_<version>.
-- @column kb: KB digits or NULL.
-- @column patch_name: Title as the source gives it.
-- @column classification: Normalized classification.
-- @column msrc_severity: MSRC severity.
-- @column state: Canonical state observed.
-- @column raw_state: The source's own state word.
-- @column previous_state: The state of the previous event of the same patch on the machine, NULL for the first.
-- @column state_changed: True when state differs from previous_state (or it is the first event).
-- @column source: Source of the observation.
-- @column observed_at: When it was observed.
-- @column run_id: Assessment / installation activity id, or Log Analytics CorrelationId.
-- @column source_file: The estate file.
WITH
params AS (
    SELECT timezone('UTC', (CAST($as_of AS DATE) + 1)::TIMESTAMP) AS cutoff,
           timezone('UTC', CAST($from_day AS DATE)::TIMESTAMP) AS from_ts
),
obs AS (
    SELECT o.*, source_rank(o.source) AS rank
    FROM staging.patch_observations AS o
    CROSS JOIN params
    WHERE o.observed_at < params.cutoff
      AND o.observed_at >= coalesce(params.from_ts, '-infinity'::TIMESTAMPTZ)
),
-- An incremental build (the days from $from_day) continues the rows it keeps (kept_history;
-- empty for a full build): each machine's positions go on from its last one, and the first
-- event of a patch takes the state of its last kept event as previous state. Only the machines
-- and patches observed on the days recomputed are looked up, not every pair of the history.
kept_position AS (
    SELECT vm_id, max(event_seq) AS last_seq
    FROM kept_history SEMI JOIN (SELECT DISTINCT vm_id FROM obs) USING (vm_id)
    GROUP BY vm_id
),
kept_state AS (
    SELECT vm_id, patch_key, arg_max(state, event_seq) AS state
    FROM kept_history SEMI JOIN (SELECT DISTINCT vm_id, patch_key FROM obs) USING (vm_id, patch_key)
    GROUP BY vm_id, patch_key
),
sequenced AS (
    SELECT
        *,
        lag(state) OVER (
            PARTITION BY vm_id, patch_key ORDER BY observed_at, rank DESC, state, run_id, source_file
        ) AS previous_state,
        row_number() OVER (
            PARTITION BY vm_id ORDER BY observed_at, rank DESC, patch_key, state, run_id, source_file
        ) AS event_seq
    FROM obs
)
SELECT
    s.vm_id,
    coalesce(p.last_seq, 0) + s.event_seq AS event_seq,
    s.patch_key,
    kb,
    patch_name,
    classification,
    msrc_severity,
    s.state,
    raw_state,
    coalesce(s.previous_state, k.state) AS previous_state,
    coalesce(s.previous_state, k.state) IS DISTINCT FROM s.state AS state_changed,
    source,
    observed_at,
    run_id,
    source_file
FROM sequenced AS s
LEFT JOIN kept_position AS p ON p.vm_id = s.vm_id
LEFT JOIN kept_state AS k ON k.vm_id = s.vm_id AND k.patch_key = s.patch_key
ORDER BY s.vm_id, event_seq
