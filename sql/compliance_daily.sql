-- @table Daily compliance trend over the whole history (first observed day to $as_of), maintained incrementally (a run recomputes the days from the earliest one its new or changed observations touch; anything else that the counts depend on changing means a full rebuild): the state of every machine x patch pair at the end of each UTC day, reconstructed from the validity intervals of marts.vm_patch_history states (the same winner per instant as marts.vm_patch_state), counted per day at several grains. The rules of marts.vm_patch_state day by day: a failed install stays failed while later listings show the patch missing or not selected, until an attempt succeeds or an observation shows it installed or not applicable; a missing, failed or not_selected patch whose superseding patch (marts.patch_supersedence_closure) is installed that day, or for a Linux <package>_<version> a newer version of the package (versions compared number by number), counts as superseded_satisfied; not_selected counts as missing. On its last day the fleet row equals the counts of marts.vm_patch_state by state (not-applicable pairs left out). Pending reboot is never installed. Machine attributes are today's (marts.vm_inventory). Coverage as in marts.vm_patch_state, day by day: on a day when a machine's newest full listing of its patches (staging.assessment_runs: an assessment or an installation run) is more than $stale_after_days days old, or it has none yet, every pair of the machine counts as unknown, never as compliant.
-- @column day: The UTC day; states as of its end.
-- @column grain: Which columns the row is broken down by: fleet (none), asset_category, criticality, environment, owner, severity, or detail (all five).
-- @column asset_category: Asset category ('(none)' when untagged); NULL when the grain does not break down by it.
-- @column criticality: Machine criticality ('(none)' when untagged); NULL when not in the grain.
-- @column environment: Machine environment ('(none)' when untagged); NULL when not in the grain.
-- @column owner: Machine owner ('(none)' when untagged); NULL when not in the grain.
-- @column severity: Patch severity (staging.patch_severity; '(none)' when unknown); NULL when not in the grain.
-- @column machines: Machines with at least one applicable patch in the row.
-- @column applicable_pairs: Machine x patch pairs known and applicable at the end of the day (any last known state except not_applicable), unknown ones included.
-- @column installed: Pairs installed (on machines whose coverage is current that day).
-- @column superseded_satisfied: Pairs not installed whose superseding patch is installed (for a Linux package: a newer version of it).
-- @column missing: Pairs missing or not_selected (and not satisfied by supersedence).
-- @column failed: Pairs whose latest installation failed, nothing since showing them installed or not applicable (and not satisfied by supersedence).
-- @column pending_reboot: Pairs installed but waiting for a reboot.
-- @column unknown: Pairs on machines whose coverage is stale that day (no full listing within stale_after_days): their last known state is not counted.
-- @column compliance_share: (installed + superseded_satisfied) / applicable_pairs, 0-1 (unknown pairs count against it).
-- @column as_of: Evaluation date.
WITH
params AS (
    SELECT CAST($as_of AS DATE) AS as_of, timezone('UTC', (CAST($as_of AS DATE) + 1)::TIMESTAMP) AS cutoff,
           timezone('UTC', CAST($from_day AS DATE)::TIMESTAMP) AS start,
           CAST($stale_after_days AS INTEGER) AS stale_after_days
),
-- Machines and machine x patch pairs numbered once (in id order): the sorts, groups and joins
-- below then key on integers, not on ARM ids a hundred characters long.
-- For a daily run ($from_day) the pairs are those of the summary of the days before it
-- (trend_carry, sql/compliance_daily_carry.sql; empty for a full build) and of the new days.
known_pairs AS MATERIALIZED (
    SELECT DISTINCT vm_id, patch_key FROM (
        SELECT vm_id, patch_key FROM trend_carry
        UNION ALL
        SELECT h.vm_id, h.patch_key
        FROM marts.vm_patch_history AS h CROSS JOIN params
        WHERE $from_day IS NULL OR h.observed_at >= params.start
    )
),
machines AS MATERIALIZED (
    SELECT vm_id, row_number() OVER (ORDER BY vm_id) AS machine
    FROM (SELECT DISTINCT vm_id FROM known_pairs)
),
pairs AS MATERIALIZED (
    SELECT p.vm_id, p.patch_key, m.machine, row_number() OVER (ORDER BY p.vm_id, p.patch_key) AS pair
    FROM known_pairs AS p
    JOIN machines AS m ON m.vm_id IS NOT DISTINCT FROM p.vm_id
),
-- The UTC days on which each machine had a successful full listing of its patches.
listing_days AS (
    SELECT DISTINCT m.machine, r.assessed_at::DATE AS day
    FROM staging.assessment_runs AS r
    JOIN machines AS m USING (vm_id)
    CROSS JOIN params
    WHERE r.succeeded AND r.assessed_at < params.cutoff
      -- a daily run's days are stale either way when the newest listing is older than this
      AND ($from_day IS NULL
           OR r.assessed_at >= timezone('UTC', (CAST($from_day AS DATE) - params.stale_after_days - 1)::TIMESTAMP))
),
-- Each pair at each instant: the winning observation (the same winner as marts.vm_patch_state),
-- the outcome of an installation attempt then (a success wins over a failure at the same
-- instant) and whether an observation shows it installed or not applicable. For a daily run
-- ($from_day) only the instants from that day on, and one row per pair summing up the history
-- before it (its last winner, newest attempt and newest resolution: trend_carry, kept from the
-- previous day), so that it neither reads nor orders the whole history again.
observations AS (
    SELECT p.pair, h.observed_at, h.kb, h.state, h.source, h.run_id, h.source_file,
           h.source IN ('resource_graph_installation', 'patch_operation_install', 'log_analytics_run')
               AND h.state IN ('installed', 'installed_pending_reboot', 'failed') AS attempt
    FROM marts.vm_patch_history AS h
    JOIN pairs AS p ON p.vm_id IS NOT DISTINCT FROM h.vm_id AND p.patch_key IS NOT DISTINCT FROM h.patch_key
    CROSS JOIN params
    WHERE h.observed_at < params.cutoff AND ($from_day IS NULL OR h.observed_at >= params.start)
),
events AS (
    SELECT pair, observed_at,
           arg_min({'kb': kb, 'state': state}, (source_rank(source), state, run_id, source_file)) AS winner,
           arg_max(state, (state <> 'failed', state)) FILTER (WHERE attempt) AS attempt_state,
           max(observed_at) FILTER (WHERE attempt) AS attempt_at,
           max(observed_at) FILTER (WHERE state IN ('installed', 'not_applicable')) AS resolved_at
    FROM observations
    GROUP BY pair, observed_at
    UNION ALL
    SELECT p.pair, k.observed_at, {'kb': k.kb, 'state': k.state}, k.attempt_state, k.attempt_at, k.resolved_at
    FROM trend_carry AS k
    JOIN pairs AS p ON p.vm_id IS NOT DISTINCT FROM k.vm_id AND p.patch_key IS NOT DISTINCT FROM k.patch_key
),
-- A daily run's pairs mostly have one instant, the summary carried over (no observation on the
-- new days): their state needs no window; only the pairs with several instants go through the
-- windows below (every pair in a full build).
instants AS (
    SELECT pair, count(*) > 1 AS several FROM events GROUP BY pair
),
-- The state each instant leaves, by marts.vm_patch_state's rule: a missing or not selected patch
-- whose newest installation attempt failed, with nothing since showing it installed or not
-- applicable, stays failed.
states AS (
    SELECT
        pair, winner.kb, observed_at,
        CASE
            WHEN winner.state IN ('missing', 'not_selected')
                 AND arg_max(attempt_state, attempt_at) OVER pair = 'failed'
                 AND coalesce(max(resolved_at) OVER pair < max(attempt_at) OVER pair, true) THEN 'failed'
            ELSE winner.state
        END AS state
    FROM events
    SEMI JOIN (SELECT pair FROM instants WHERE several) USING (pair)
    WINDOW pair AS (PARTITION BY pair ORDER BY observed_at ROWS UNBOUNDED PRECEDING)
),
changes AS (
    SELECT *
    FROM (
        SELECT *, lag(state) OVER (PARTITION BY pair ORDER BY observed_at) AS previous_state
        FROM states
    )
    WHERE previous_state IS DISTINCT FROM state
),
-- A pair's only instant: the same rule on its own values; its state holds to $as_of.
single_changes AS (
    SELECT pair, kb, observed_at, state
    FROM (
        SELECT
            e.pair, e.winner.kb, e.observed_at,
            CASE
                WHEN e.winner.state IN ('missing', 'not_selected') AND e.attempt_state = 'failed'
                     AND e.attempt_at IS NOT NULL
                     AND coalesce(e.resolved_at < e.attempt_at, true) THEN 'failed'
                ELSE e.winner.state
            END AS state
        FROM events AS e
        SEMI JOIN (SELECT pair FROM instants WHERE NOT several) USING (pair)
    )
    WHERE state IS NOT NULL
),
-- [first_day, last_day]: the days at whose end the state holds.
intervals AS (
    SELECT
        p.machine, p.patch_key, c.kb, c.state,
        c.observed_at::DATE AS first_day,
        coalesce(
            (lead(c.observed_at) OVER (PARTITION BY c.pair ORDER BY c.observed_at))::DATE - 1,
            (SELECT as_of FROM params)
        ) AS last_day
    FROM changes AS c
    JOIN pairs AS p USING (pair)
    UNION ALL
    SELECT p.machine, p.patch_key, c.kb, c.state, c.observed_at::DATE AS first_day, (SELECT as_of FROM params) AS last_day
    FROM single_changes AS c
    JOIN pairs AS p USING (pair)
),
-- $from_day (NULL for all): a daily run recomputes only the days its new data can change.
-- Each interval is expanded to its days directly (linear in pairs x days, no range join).
first AS (
    SELECT coalesce(CAST($from_day AS DATE), (SELECT min(observed_at)::DATE FROM events)) AS day
),
pair_days AS (
    SELECT CAST(unnest(generate_series(greatest(i.first_day, first.day), i.last_day, INTERVAL 1 DAY)) AS DATE) AS day,
           i.machine, i.patch_key, i.state
    FROM intervals AS i, first
    WHERE i.state <> 'not_applicable' AND i.last_day >= first.day
),
-- Stale that day: the machine's newest listing up to the day is older than stale_after_days, or
-- none (per machine and day, then applied to each of its pairs).
machine_days AS (
    SELECT CAST(unnest(generate_series(greatest(min(i.first_day), first.day), params.as_of, INTERVAL 1 DAY)) AS DATE)
        AS day, i.machine
    FROM intervals AS i, first, params
    WHERE i.state <> 'not_applicable'
    GROUP BY i.machine, first.day, params.as_of
),
stale_machines AS (
    SELECT m.day, m.machine
    FROM machine_days AS m
    ASOF LEFT JOIN listing_days AS l ON l.machine = m.machine AND l.day <= m.day
    WHERE l.day IS NULL OR m.day - l.day > (SELECT stale_after_days FROM params)
),
-- Superseded-satisfied (as in marts.vm_patch_state): the days a missing, failed or not_selected
-- interval overlaps an interval of the same machine in which a superseding patch is installed,
-- or for a Linux <package>_<version> a newer version of the package (overlaps of intervals, then
-- days), on days the machine's coverage is current (else the pair is unknown).
-- (A package's version numbers are parsed once per patch, not once per interval.)
package_versions AS (
    SELECT patch_key, split_part(patch_key, '_', 1) AS package, package_version_numbers(patch_key) AS version_numbers
    FROM (SELECT DISTINCT patch_key FROM pairs)
    WHERE strpos(patch_key, '_') > 1
),
packages AS (
    SELECT i.machine, i.patch_key, i.state, i.first_day, i.last_day, v.package, v.version_numbers
    FROM intervals AS i
    JOIN package_versions AS v USING (patch_key)
    WHERE i.kb IS NULL AND i.state IN ('missing', 'failed', 'not_selected', 'installed')
),
satisfying AS (
    SELECT m.machine, m.patch_key, m.state, m.first_day, m.last_day, q.first_day AS q_first_day, q.last_day AS q_last_day
    FROM intervals AS m
    JOIN marts.patch_supersedence_closure AS c ON c.superseded_kb = m.kb
    JOIN intervals AS q ON q.machine = m.machine AND q.kb = c.kb AND q.state = 'installed'
    WHERE m.state IN ('missing', 'failed', 'not_selected')
    UNION ALL
    SELECT m.machine, m.patch_key, m.state, m.first_day, m.last_day, q.first_day AS q_first_day, q.last_day AS q_last_day
    FROM packages AS m
    JOIN packages AS q
      ON q.machine = m.machine AND q.package = m.package AND q.state = 'installed'
     AND q.version_numbers > m.version_numbers
    WHERE m.state IN ('missing', 'failed', 'not_selected')
),
satisfied AS (
    SELECT DISTINCT
        CAST(unnest(generate_series(greatest(s.first_day, s.q_first_day, first.day), least(s.last_day, s.q_last_day),
                                    INTERVAL 1 DAY)) AS DATE) AS day,
        s.machine, s.patch_key, s.state
    FROM satisfying AS s
    CROSS JOIN first
),
satisfied_counts AS (
    SELECT x.day, x.machine, coalesce(s.severity, '(none)') AS severity,
           count(*) FILTER (WHERE x.state = 'failed') AS failed, count(*) FILTER (WHERE x.state <> 'failed') AS missing
    FROM satisfied AS x
    ANTI JOIN stale_machines AS u USING (day, machine)
    LEFT JOIN staging.patch_severity AS s USING (patch_key)
    GROUP BY ALL
),
-- Counted per machine, day and severity first (the grains below then sum far fewer rows), as if
-- nothing were superseded; the satisfied pairs then move from missing or failed.
classified AS (
    SELECT
        p.day,
        p.machine,
        coalesce(s.severity, '(none)') AS severity,
        CASE
            WHEN u.machine IS NOT NULL THEN 'unknown'
            WHEN p.state = 'installed' THEN 'installed'
            WHEN p.state = 'installed_pending_reboot' THEN 'pending_reboot'
            WHEN p.state = 'failed' THEN 'failed'
            ELSE 'missing'
        END AS status
    FROM pair_days AS p
    LEFT JOIN stale_machines AS u USING (day, machine)
    LEFT JOIN staging.patch_severity AS s USING (patch_key)
),
unsuperseded AS (
    SELECT
        day,
        machine,
        severity,
        count(*) AS applicable_pairs,
        count(*) FILTER (WHERE status = 'installed') AS installed,
        count(*) FILTER (WHERE status = 'missing') AS missing,
        count(*) FILTER (WHERE status = 'failed') AS failed,
        count(*) FILTER (WHERE status = 'pending_reboot') AS pending_reboot,
        count(*) FILTER (WHERE status = 'unknown') AS unknown
    FROM classified
    GROUP BY day, machine, severity
),
per_machine AS (
    SELECT
        c.day,
        c.machine,
        c.severity,
        c.applicable_pairs,
        c.installed,
        coalesce(x.failed + x.missing, 0) AS superseded_satisfied,
        c.missing - coalesce(x.missing, 0) AS missing,
        c.failed - coalesce(x.failed, 0) AS failed,
        c.pending_reboot,
        c.unknown
    FROM unsuperseded AS c
    LEFT JOIN satisfied_counts AS x USING (day, machine, severity)
),
machine_rows AS (
    SELECT
        m.*,
        coalesce(i.asset_category, '(none)') AS asset_category,
        coalesce(i.criticality, '(none)') AS criticality,
        coalesce(i.environment, '(none)') AS environment,
        coalesce(i.owner, '(none)') AS owner
    FROM per_machine AS m
    JOIN machines AS n USING (machine)
    LEFT JOIN marts.vm_inventory AS i ON i.vm_id = n.vm_id
),
-- A machine has one row per day and severity, and its attributes are the same in all of them:
-- so a grain by severity counts its machines as rows, and the grains by machine attribute count
-- the machine's day totals (one row per machine and day) as rows; no distinct count needed.
machine_day_rows AS (
    SELECT day, machine, asset_category, criticality, environment, owner,
           sum(applicable_pairs) AS applicable_pairs, sum(installed) AS installed,
           sum(superseded_satisfied) AS superseded_satisfied, sum(missing) AS missing, sum(failed) AS failed,
           sum(pending_reboot) AS pending_reboot, sum(unknown) AS unknown
    FROM machine_rows
    GROUP BY day, machine, asset_category, criticality, environment, owner
),
counted AS (
    SELECT
        day,
        CASE
            WHEN GROUPING(asset_category) = 0 THEN 'asset_category'
            WHEN GROUPING(criticality) = 0 THEN 'criticality'
            WHEN GROUPING(environment) = 0 THEN 'environment'
            WHEN GROUPING(owner) = 0 THEN 'owner'
            ELSE 'fleet'
        END AS grain,
        asset_category,
        criticality,
        environment,
        owner,
        NULL::VARCHAR AS severity,
        count(*)::INTEGER AS machines,
        sum(applicable_pairs)::INTEGER AS applicable_pairs,
        sum(installed)::INTEGER AS installed,
        sum(superseded_satisfied)::INTEGER AS superseded_satisfied,
        sum(missing)::INTEGER AS missing,
        sum(failed)::INTEGER AS failed,
        sum(pending_reboot)::INTEGER AS pending_reboot,
        sum(unknown)::INTEGER AS unknown
    FROM machine_day_rows
    GROUP BY GROUPING SETS ((day), (day, asset_category), (day, criticality), (day, environment), (day, owner))
    UNION ALL
    SELECT
        day,
        CASE WHEN GROUPING(asset_category) = 0 THEN 'detail' ELSE 'severity' END AS grain,
        asset_category,
        criticality,
        environment,
        owner,
        severity,
        count(*)::INTEGER AS machines,
        sum(applicable_pairs)::INTEGER AS applicable_pairs,
        sum(installed)::INTEGER AS installed,
        sum(superseded_satisfied)::INTEGER AS superseded_satisfied,
        sum(missing)::INTEGER AS missing,
        sum(failed)::INTEGER AS failed,
        sum(pending_reboot)::INTEGER AS pending_reboot,
        sum(unknown)::INTEGER AS unknown
    FROM machine_rows
    GROUP BY GROUPING SETS ((day, severity), (day, asset_category, criticality, environment, owner, severity))
)
SELECT
    day,
    grain,
    asset_category,
    criticality,
    environment,
    owner,
    severity,
    machines,
    applicable_pairs,
    installed,
    superseded_satisfied,
    missing,
    failed,
    pending_reboot,
    unknown,
    round((installed + superseded_satisfied) / applicable_pairs, 6)::DOUBLE AS compliance_share,
    (SELECT as_of FROM params) AS as_of
FROM counted
ORDER BY day, grain, asset_category NULLS FIRST, criticality NULLS FIRST, environment NULLS FIRST,
         owner NULLS FIRST, severity NULLS FIRST
