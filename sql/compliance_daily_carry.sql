-- @table What marts.compliance_daily continues from on its next day, per machine x patch pair up to the end of as_of (marts.vm_patch_history): the winning observation of the pair's newest instant (the same winner as marts.vm_patch_state), its newest installation attempt (a success wins over a failure at the same instant) and its newest observation installed or not applicable. Kept day by day: a build adds the days from $from_day on to the summary of the days before it (trend_carry); a full build ($from_day NULL) reads every day.
-- @column vm_id: Canonical machine id.
-- @column patch_key: KB digits, or <package>_<version>.
-- @column kb: KB of the winning observation of the newest instant.
-- @column state: State of that observation.
-- @column observed_at: The newest instant.
-- @column attempt_state: Outcome of the newest installation attempt (installed, installed_pending_reboot, failed); NULL when never attempted.
-- @column attempt_at: Time of that attempt.
-- @column resolved_at: Newest observation installed or not applicable.
-- @column as_of: The day at whose end the summary holds.
WITH
params AS (
    SELECT CAST($as_of AS DATE) AS as_of, timezone('UTC', (CAST($as_of AS DATE) + 1)::TIMESTAMP) AS cutoff,
           timezone('UTC', CAST($from_day AS DATE)::TIMESTAMP) AS start
),
recent AS (
    SELECT h.vm_id, h.patch_key,
           arg_min({'kb': h.kb, 'state': h.state, 'observed_at': h.observed_at},
                   {'t': -epoch_us(h.observed_at), 'r': source_rank(h.source), 's': h.state,
                    'run': h.run_id, 'f': h.source_file}) AS last,
           arg_max(h.state, (h.observed_at, h.state <> 'failed', h.state)) FILTER (WHERE h.attempt) AS attempt_state,
           max(h.observed_at) FILTER (WHERE h.attempt) AS attempt_at,
           max(h.observed_at) FILTER (WHERE h.state IN ('installed', 'not_applicable')) AS resolved_at
    FROM (
        SELECT *,
               source IN ('resource_graph_installation', 'patch_operation_install', 'log_analytics_run')
                   AND state IN ('installed', 'installed_pending_reboot', 'failed') AS attempt
        FROM marts.vm_patch_history
    ) AS h
    CROSS JOIN params
    WHERE h.observed_at < params.cutoff AND ($from_day IS NULL OR h.observed_at >= params.start)
    GROUP BY h.vm_id, h.patch_key
)
-- The new days' summary over the kept one (every kept instant is earlier): newer wins.
SELECT
    CASE WHEN r.last IS NULL THEN k.vm_id ELSE r.vm_id END AS vm_id,
    CASE WHEN r.last IS NULL THEN k.patch_key ELSE r.patch_key END AS patch_key,
    CASE WHEN r.last IS NULL THEN k.kb ELSE r.last.kb END AS kb,
    CASE WHEN r.last IS NULL THEN k.state ELSE r.last.state END AS state,
    CASE WHEN r.last IS NULL THEN k.observed_at ELSE r.last.observed_at END AS observed_at,
    CASE WHEN r.attempt_at IS NOT NULL THEN r.attempt_state ELSE k.attempt_state END AS attempt_state,
    coalesce(r.attempt_at, k.attempt_at) AS attempt_at,
    coalesce(r.resolved_at, k.resolved_at) AS resolved_at,
    (SELECT as_of FROM params) AS as_of
FROM recent AS r
FULL JOIN trend_carry AS k
  ON k.vm_id IS NOT DISTINCT FROM r.vm_id AND k.patch_key IS NOT DISTINCT FROM r.patch_key
ORDER BY vm_id, patch_key
