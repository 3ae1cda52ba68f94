-- @table What the latest state of each patch on each machine derives from, up to the end of $as_of (staging.patch_observations): the newest observation (the same winner as marts.vm_patch_state: newest first; at the same time installation results > assessments > Log Analytics), the newest non-empty KB, title, classification and severity, the first observation, the last one installed or not applicable, the first not installed after it (the open clock), and the newest installation attempt (what keeps a failed install failed in marts.vm_patch_state). Maintained day by day: a build adds the days after the previous evaluation date to the facts it kept (kept_facts, the facts at the end of the day before $from_day); a full build ($from_day NULL) reads every day.
-- @column vm_id: Canonical machine id.
-- @column patch_key: KB digits, or <package>_<version>.
-- @column kb: Newest KB an observation gives.
-- @column patch_name: Newest title an observation gives.
-- @column classification: Newest classification an observation gives.
-- @column msrc_severity: Newest MSRC severity an observation gives.
-- @column newest_kb: KB of the newest observation.
-- @column newest_patch_name: Title of the newest observation.
-- @column newest_classification: Classification of the newest observation.
-- @column newest_msrc_severity: MSRC severity of the newest observation.
-- @column state: State of the newest observation.
-- @column raw_state: The source's own state word of the newest observation.
-- @column source: Source of the newest observation.
-- @column observed_at: Time of the newest observation.
-- @column run_id: Run of the newest observation.
-- @column source_file: Estate file of the newest observation.
-- @column first_observed_at: First observation, any state.
-- @column last_resolved_at: Newest observation installed or not applicable.
-- @column opened_at: First observation missing, failed, not selected or pending a reboot after last_resolved_at.
-- @column last_attempt_state: Outcome of the newest installation attempt (an installation run's or install operation's row installed, installed_pending_reboot or failed); NULL when never attempted.
-- @column last_attempt_at: Time of that attempt.
WITH
params AS (
    SELECT timezone('UTC', (CAST($as_of AS DATE) + 1)::TIMESTAMP) AS cutoff,
           timezone('UTC', CAST($from_day AS DATE)::TIMESTAMP) AS from_ts
),
obs AS (
    SELECT
        o.*,
        source_rank(o.source) AS rank,
        o.source IN ('resource_graph_installation', 'patch_operation_install', 'log_analytics_run')
            AND o.state IN ('installed', 'installed_pending_reboot', 'failed') AS attempt
    FROM staging.patch_observations AS o
    CROSS JOIN params
    WHERE o.observed_at < params.cutoff
      AND o.observed_at >= coalesce(params.from_ts, '-infinity'::TIMESTAMPTZ)
),
facts AS (
    SELECT
        vm_id,
        patch_key,
        max(observed_at) AS last_observed_at,
        arg_max(kb, observed_at) FILTER (WHERE kb IS NOT NULL) AS kb,
        arg_max(patch_name, observed_at) FILTER (WHERE patch_name IS NOT NULL) AS patch_name,
        arg_max(classification, observed_at) FILTER (WHERE classification IS NOT NULL) AS classification,
        arg_max(msrc_severity, observed_at) FILTER (WHERE msrc_severity IS NOT NULL) AS msrc_severity,
        min(observed_at) AS first_observed_at,
        max(observed_at) FILTER (WHERE state IN ('installed', 'not_applicable')) AS last_resolved_at,
        -- At the same instant a success wins over a failure.
        arg_max(state, (observed_at, state <> 'failed', state)) FILTER (WHERE attempt) AS last_attempt_state,
        max(observed_at) FILTER (WHERE attempt) AS last_attempt_at
    FROM obs
    GROUP BY vm_id, patch_key
),
-- The newest observation of each pair: the first by precedence among those of its newest instant
-- (ordered there only, not over every row).
newest AS (
    SELECT o.*
    FROM obs AS o
    JOIN facts AS f ON f.vm_id = o.vm_id AND f.patch_key = o.patch_key AND f.last_observed_at = o.observed_at
    QUALIFY row_number() OVER (
        PARTITION BY o.vm_id, o.patch_key ORDER BY o.rank, o.state, o.run_id, o.source_file
    ) = 1
),
opened AS (
    SELECT o.vm_id, o.patch_key, min(o.observed_at) AS opened_at
    FROM obs AS o
    JOIN facts AS f USING (vm_id, patch_key)
    WHERE o.state IN ('missing', 'failed', 'not_selected', 'installed_pending_reboot')
      AND (f.last_resolved_at IS NULL OR o.observed_at > f.last_resolved_at)
    GROUP BY o.vm_id, o.patch_key
),
recomputed AS (
    SELECT
        n.vm_id, n.patch_key, f.kb, f.patch_name, f.classification, f.msrc_severity,
        n.kb AS newest_kb, n.patch_name AS newest_patch_name, n.classification AS newest_classification,
        n.msrc_severity AS newest_msrc_severity, n.state, n.raw_state, n.source, n.observed_at, n.run_id,
        n.source_file, f.first_observed_at, f.last_resolved_at, e.opened_at, f.last_attempt_state,
        f.last_attempt_at
    FROM newest AS n
    JOIN facts AS f USING (vm_id, patch_key)
    LEFT JOIN opened AS e USING (vm_id, patch_key)
)
-- The new days' facts over the kept ones: newer wins, the first stays; the open clock restarts
-- when the patch was resolved again in the new days.
SELECT
    coalesce(r.vm_id, k.vm_id) AS vm_id,
    coalesce(r.patch_key, k.patch_key) AS patch_key,
    coalesce(r.kb, k.kb) AS kb,
    coalesce(r.patch_name, k.patch_name) AS patch_name,
    coalesce(r.classification, k.classification) AS classification,
    coalesce(r.msrc_severity, k.msrc_severity) AS msrc_severity,
    CASE WHEN r.vm_id IS NULL THEN k.newest_kb ELSE r.newest_kb END AS newest_kb,
    CASE WHEN r.vm_id IS NULL THEN k.newest_patch_name ELSE r.newest_patch_name END AS newest_patch_name,
    CASE WHEN r.vm_id IS NULL THEN k.newest_classification ELSE r.newest_classification END AS newest_classification,
    CASE WHEN r.vm_id IS NULL THEN k.newest_msrc_severity ELSE r.newest_msrc_severity END AS newest_msrc_severity,
    CASE WHEN r.vm_id IS NULL THEN k.state ELSE r.state END AS state,
    CASE WHEN r.vm_id IS NULL THEN k.raw_state ELSE r.raw_state END AS raw_state,
    CASE WHEN r.vm_id IS NULL THEN k.source ELSE r.source END AS source,
    CASE WHEN r.vm_id IS NULL THEN k.observed_at ELSE r.observed_at END AS observed_at,
    CASE WHEN r.vm_id IS NULL THEN k.run_id ELSE r.run_id END AS run_id,
    CASE WHEN r.vm_id IS NULL THEN k.source_file ELSE r.source_file END AS source_file,
    coalesce(least(r.first_observed_at, k.first_observed_at), r.first_observed_at, k.first_observed_at)
        AS first_observed_at,
    coalesce(greatest(r.last_resolved_at, k.last_resolved_at), r.last_resolved_at, k.last_resolved_at)
        AS last_resolved_at,
    CASE WHEN r.last_resolved_at IS NOT NULL THEN r.opened_at
         ELSE coalesce(least(k.opened_at, r.opened_at), k.opened_at, r.opened_at) END AS opened_at,
    CASE WHEN r.last_attempt_at IS NOT NULL THEN r.last_attempt_state ELSE k.last_attempt_state END AS last_attempt_state,
    coalesce(r.last_attempt_at, k.last_attempt_at) AS last_attempt_at
FROM recomputed AS r
FULL JOIN kept_facts AS k ON k.vm_id = r.vm_id AND k.patch_key = r.patch_key
ORDER BY vm_id, patch_key
