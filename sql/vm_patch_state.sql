-- @unique vm_id, patch_key as vm_patch_state_key_unique: One state per machine and patch: gaps and reports count on it.
-- @table The state of each patch on each machine at the end of the evaluation date, derived from the facts of each pair up to that date (staging.vm_patch_facts, kept day by day from staging.patch_observations; computed from every observation for an earlier as_of), so the same SQL with an earlier as_of gives the state on that date. The newest observation wins; at the same time, precedence is resource_graph_installation > patch_operation_install > resource_graph_assessment > patch_operation_assess > log_analytics_run > log_analytics_update. A machine whose coverage is stale (no successful full listing of its patches, assessment or installation run (staging.assessment_runs), within stale_after_days) reports unknown_stale; last_known_state keeps what the data last said. A failed install stays failed: when the newest installation attempt of the patch on the machine failed, later assessments that list it as missing (or runs that list it not selected) leave it failed until a later attempt succeeds or an observation shows it installed or not applicable.
-- @column vm_id: Canonical machine id.
-- @column patch_key: KB digits, or <package>_<version>.
-- @column kb: KB digits or NULL.
-- @column patch_name: Title from the newest observation that has one.
-- @column classification: Normalized classification from the newest observation that has one.
-- @column msrc_severity: MSRC severity from the newest observation that has one.
-- @column state: Canonical state on the evaluation date: installed, installed_pending_reboot, missing, failed (the newest installation attempt failed, see above), not_applicable, not_selected (left out by an installation run: available and not installed), superseded_satisfied (missing or failed, but a patch that supersedes it is installed on the machine, or for a Linux package a newer version of it: see satisfied_by_kb), or unknown_stale when the machine's coverage is stale.
-- @column last_known_state: The state of the newest observation, whatever the coverage or supersedence.
-- @column satisfied_by_kb: For superseded_satisfied: the installed KB that supersedes this patch (marts.patch_supersedence_closure), or the patch_key of the newest installed version of the Linux package.
-- @column raw_state: The source's own state word of the newest observation.
-- @column source: Source of the newest observation.
-- @column observed_at: Time of the newest observation.
-- @column run_id: Run of the newest observation.
-- @column source_file: Estate file of the newest observation.
-- @column first_seen_at: First observation of the patch on the machine that was not installed or not applicable in the current open episode (start of the missing / failed / pending-reboot clock); NULL when the patch is installed or not applicable.
-- @column first_seen_missing_at: Same as first_seen_at (the name in the brief of stage 6).
-- @column first_observed_at: First observation of the patch on the machine, any state.
-- @column last_attempt_state: Outcome of the newest installation attempt of the patch on the machine (installed, installed_pending_reboot, failed); NULL when never attempted.
-- @column last_attempt_at: Time of that attempt.
-- @column coverage_status: assessed or unknown_stale (as in marts.vm_inventory).
-- @column as_of: Evaluation date.
WITH
params AS (
    SELECT
        CAST($as_of AS DATE) AS as_of,
        timezone('UTC', (CAST($as_of AS DATE) + 1)::TIMESTAMP) AS cutoff,
        CAST($stale_after_days AS INTEGER) AS stale_after_days
),
-- The facts of each pair up to the end of $as_of (sql/vm_patch_facts.sql): the table kept day by
-- day for the mart, computed from every observation for another date.
facts AS (
    SELECT * FROM patch_facts
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
      -- older runs leave the machine stale either way (no coverage row): not read
      AND r.assessed_at >= timezone('UTC', (params.as_of - params.stale_after_days)::TIMESTAMP)
    GROUP BY r.vm_id
),
latest AS (
    SELECT
        l.vm_id,
        l.patch_key,
        coalesce(l.newest_kb, l.kb) AS kb,
        coalesce(l.newest_patch_name, l.patch_name) AS patch_name,
        coalesce(l.newest_classification, l.classification) AS classification,
        coalesce(l.newest_msrc_severity, l.msrc_severity) AS msrc_severity,
        CASE
            WHEN coalesce(c.coverage_status, 'unknown_stale') = 'unknown_stale' THEN 'unknown_stale'
            -- The newest attempt failed and nothing since showed it installed or not needed.
            WHEN l.state IN ('missing', 'not_selected') AND l.last_attempt_state = 'failed'
                 AND (l.last_resolved_at IS NULL OR l.last_resolved_at < l.last_attempt_at) THEN 'failed'
            ELSE l.state
        END AS state,
        l.state AS last_known_state,
        l.raw_state,
        l.source,
        l.observed_at,
        l.run_id,
        l.source_file,
        CASE WHEN l.state NOT IN ('installed', 'not_applicable') THEN l.opened_at END AS first_seen_at,
        CASE WHEN l.state NOT IN ('installed', 'not_applicable') THEN l.opened_at END AS first_seen_missing_at,
        l.first_observed_at,
        l.last_attempt_state,
        l.last_attempt_at,
        coalesce(c.coverage_status, 'unknown_stale') AS coverage_status,
        params.as_of
    FROM facts AS l
    LEFT JOIN coverage AS c USING (vm_id)
    CROSS JOIN params
),
-- A missing or failed patch is satisfied when a later patch that supersedes it (transitively)
-- is installed on the same machine: Windows cumulative updates replace their predecessors.
satisfied_kb AS (
    SELECT m.vm_id, m.patch_key, min(c.kb) AS satisfied_by_kb
    FROM latest AS m
    JOIN marts.patch_supersedence_closure AS c ON c.superseded_kb = m.kb
    JOIN latest AS i ON i.vm_id = m.vm_id AND i.kb = c.kb AND i.last_known_state = 'installed'
    WHERE m.last_known_state IN ('missing', 'failed', 'not_selected')
    GROUP BY m.vm_id, m.patch_key
),
-- A Linux package has one installed version: an older <package>_<version> is satisfied by a
-- newer version of the same package installed on the machine (versions compared by their
-- numbers in order: 1.9.9-1ubuntu2.11 is newer than 1.9.9-1ubuntu2.9).
-- (A package's version numbers are parsed once per patch, not once per machine.)
package_versions AS (
    SELECT patch_key, split_part(patch_key, '_', 1) AS package, package_version_numbers(patch_key) AS version_numbers
    FROM (SELECT DISTINCT patch_key FROM latest)
    WHERE strpos(patch_key, '_') > 1
),
packages AS (
    SELECT l.vm_id, l.patch_key, l.last_known_state, v.package, v.version_numbers
    FROM latest AS l
    JOIN package_versions AS v USING (patch_key)
    WHERE l.kb IS NULL
),
satisfied_package AS (
    SELECT m.vm_id, m.patch_key, arg_max(i.patch_key, i.version_numbers) AS satisfied_by_kb
    FROM packages AS m
    JOIN packages AS i
      ON i.vm_id = m.vm_id AND i.package = m.package AND i.last_known_state = 'installed'
     AND i.version_numbers > m.version_numbers
    WHERE m.last_known_state IN ('missing', 'failed', 'not_selected')
    GROUP BY m.vm_id, m.patch_key
),
satisfied AS (
    SELECT * FROM satisfied_kb
    UNION ALL
    SELECT * FROM satisfied_package
)
SELECT
    l.* EXCLUDE (state, last_known_state, raw_state, source, observed_at, run_id, source_file,
                 first_seen_at, first_seen_missing_at, first_observed_at, last_attempt_state, last_attempt_at,
                 coverage_status, as_of),
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
    l.last_attempt_state,
    l.last_attempt_at,
    l.coverage_status,
    l.as_of
FROM latest AS l
LEFT JOIN satisfied AS s USING (vm_id, patch_key)
ORDER BY l.vm_id, l.patch_key
