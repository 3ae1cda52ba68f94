-- @table The state of each patch on each machine at the end of the evaluation date, reconstructed from the full observation history (staging.patch_observations), so the same SQL with an earlier as_of gives the state on that date. The newest observation wins; at the same time, precedence is resource_graph_installation > patch_operation_install > resource_graph_assessment > patch_operation_assess > log_analytics_run > log_analytics_update. A machine whose coverage is stale (no successful full listing of its patches, assessment or installation run (staging.assessment_runs), within stale_after_days) reports unknown_stale; last_known_state keeps what the data last said.
-- @column vm_id: Canonical machine id.
-- @column patch_key: KB digits, or <package>_<version>.
-- @column kb: KB digits or NULL.
-- @column patch_name: Title from the newest observation that has one.
-- @column classification: Normalized classification from the newest observation that has one.
-- @column msrc_severity: MSRC severity from the newest observation that has one.
-- @column state: Canonical state on the evaluation date: installed, installed_pending_reboot, missing, failed, not_applicable, not_selected, superseded_satisfied (missing or failed, but a patch that supersedes it is installed on the machine: see satisfied_by_kb), or unknown_stale when the machine's coverage is stale.
-- @column last_known_state: The state of the newest observation, whatever the coverage or supersedence.
-- @column satisfied_by_kb: For superseded_satisfied: the installed KB that supersedes this patch (marts.patch_supersedence_closure).
-- @column raw_state: The source's own state word of the newest observation.
-- @column source: Source of the newest observation.
-- @column observed_at: Time of the newest observation.
-- @column run_id: Run of the newest observation.
-- @column source_file: Estate file of the newest observation.
-- @column first_seen_at: First observation of the patch on the machine that was not installed or not applicable in the current open episode (start of the missing / failed / pending-reboot clock); NULL when the patch is installed or not applicable.
-- @column first_seen_missing_at: Same as first_seen_at (the name in the brief of stage 6).
-- @column first_observed_at: First observation of the patch on the machine, any state.
-- @column coverage_status: assessed or unknown_stale (as in marts.vm_inventory).
-- @column as_of: Evaluation date.
WITH
params AS (
    SELECT
        CAST($as_of AS DATE) AS as_of,
        timezone('UTC', (CAST($as_of AS DATE) + 1)::TIMESTAMP) AS cutoff,
        CAST($stale_after_days AS INTEGER) AS stale_after_days
),
obs AS (
    SELECT o.*, source_rank(o.source) AS rank
    FROM staging.patch_observations AS o
    CROSS JOIN params
    WHERE o.observed_at < params.cutoff
),
ranked AS (
    SELECT
        *,
        row_number() OVER (
            PARTITION BY vm_id, patch_key
            ORDER BY observed_at DESC, rank, state, run_id, source_file
        ) AS recency
    FROM obs
),
facts AS (
    SELECT
        vm_id,
        patch_key,
        arg_max(kb, observed_at) FILTER (WHERE kb IS NOT NULL) AS kb,
        arg_max(patch_name, observed_at) FILTER (WHERE patch_name IS NOT NULL) AS patch_name,
        arg_max(classification, observed_at) FILTER (WHERE classification IS NOT NULL) AS classification,
        arg_max(msrc_severity, observed_at) FILTER (WHERE msrc_severity IS NOT NULL) AS msrc_severity,
        min(observed_at) AS first_observed_at,
        max(observed_at) FILTER (WHERE state IN ('installed', 'not_applicable')) AS last_resolved_at
    FROM obs
    GROUP BY vm_id, patch_key
),
episode AS (
    SELECT o.vm_id, o.patch_key, min(o.observed_at) AS opened_at
    FROM obs AS o
    JOIN facts AS f USING (vm_id, patch_key)
    WHERE o.state IN ('missing', 'failed', 'not_selected', 'installed_pending_reboot')
      AND (f.last_resolved_at IS NULL OR o.observed_at > f.last_resolved_at)
    GROUP BY o.vm_id, o.patch_key
),
coverage AS (
    SELECT
        r.vm_id,
        CASE
            WHEN date_diff('day', max(r.assessed_at)::DATE, any_value(params.as_of)) > any_value(params.stale_after_days)
                THEN 'unknown_stale'
            ELSE 'assessed'
        END AS coverage_status
    FROM staging.assessment_runs AS r
    CROSS JOIN params
    WHERE r.succeeded AND r.assessed_at < params.cutoff
    GROUP BY r.vm_id
),
latest AS (
    SELECT
        l.vm_id,
        l.patch_key,
        coalesce(l.kb, f.kb) AS kb,
        coalesce(l.patch_name, f.patch_name) AS patch_name,
        coalesce(l.classification, f.classification) AS classification,
        coalesce(l.msrc_severity, f.msrc_severity) AS msrc_severity,
        CASE WHEN coalesce(c.coverage_status, 'unknown_stale') = 'unknown_stale' THEN 'unknown_stale' ELSE l.state END AS state,
        l.state AS last_known_state,
        l.raw_state,
        l.source,
        l.observed_at,
        l.run_id,
        l.source_file,
        CASE WHEN l.state NOT IN ('installed', 'not_applicable') THEN e.opened_at END AS first_seen_at,
        CASE WHEN l.state NOT IN ('installed', 'not_applicable') THEN e.opened_at END AS first_seen_missing_at,
        f.first_observed_at,
        coalesce(c.coverage_status, 'unknown_stale') AS coverage_status,
        params.as_of
    FROM ranked AS l
    JOIN facts AS f USING (vm_id, patch_key)
    LEFT JOIN episode AS e USING (vm_id, patch_key)
    LEFT JOIN coverage AS c USING (vm_id)
    CROSS JOIN params
    WHERE l.recency = 1
),
-- A missing or failed patch is satisfied when a later patch that supersedes it (transitively)
-- is installed on the same machine: Windows cumulative updates replace their predecessors.
satisfied AS (
    SELECT m.vm_id, m.patch_key, min(c.kb) AS satisfied_by_kb
    FROM latest AS m
    JOIN marts.patch_supersedence_closure AS c ON c.superseded_kb = m.kb
    JOIN latest AS i ON i.vm_id = m.vm_id AND i.kb = c.kb AND i.last_known_state = 'installed'
    WHERE m.last_known_state IN ('missing', 'failed', 'not_selected')
    GROUP BY m.vm_id, m.patch_key
)
SELECT
    l.* EXCLUDE (state, last_known_state, raw_state, source, observed_at, run_id, source_file,
                 first_seen_at, first_seen_missing_at, first_observed_at, coverage_status, as_of),
    CASE WHEN l.state <> 'unknown_stale' AND s.satisfied_by_kb IS NOT NULL THEN 'superseded_satisfied'
         ELSE l.state END AS state,
    l.last_known_state,
    s.satisfied_by_kb,
    l.raw_state,
    l.source,
    l.observed_at,
    l.run_id,
    l.source_file,
    l.first_seen_at,
    l.first_seen_missing_at,
    l.first_observed_at,
    l.coverage_status,
    l.as_of
FROM latest AS l
LEFT JOIN satisfied AS s USING (vm_id, patch_key)
ORDER BY l.vm_id, l.patch_key

