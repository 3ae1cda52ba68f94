-- @table Security-relevant configuration of each machine as validity intervals. Each dated inventory snapshot (azure/virtual_machines/virtual_machines-<time>.json) and each Log Analytics UpdateSummary record is one observation; consecutive observations with the same value form one interval, so an OS upgrade, a changed tag or a changed patch mode shows as a new interval starting at the first snapshot that shows it. A machine known only from the undated azure/virtual_machines.json has one open interval with valid_from NULL (known only as of that snapshot).
-- @column vm_id: Canonical machine id.
-- @column attribute: From the inventory: patch_mode, assessment_mode, automatic_updates_enabled, hotpatching_enabled, bypass_platform_safety_checks, patch_mode_state (instance view), environment, criticality, os_name, os_version, image_sku, image_version; from Log Analytics: wsus_server, windows_update_setting, os_version.
-- @column value: The setting's value as text (NULL = not set).
-- @column valid_from: Start of the interval: the first observation with this value (the setting may be older than the first snapshot); NULL when unknown.
-- @column valid_to: Start of the next interval; NULL while current.
-- @column observations: Observations (snapshots or records) in the interval.
-- @column source: inventory or log_analytics_summary.
-- @column as_of: Evaluation date; observations after its end are ignored.
WITH
params AS (
    SELECT
        CAST($as_of AS DATE) AS as_of,
        timezone('UTC', (CAST($as_of AS DATE) + 1)::TIMESTAMP) AS cutoff,
        -- $since: an incremental build reads only the observations from here on (NULL: all).
        CAST($since AS TIMESTAMPTZ) AS since
),
summary AS (
    SELECT m.vm_id, s.TimeGenerated AS seen_at, s.WSUSServer AS wsus_server,
           s.WindowsUpdateSetting AS windows_update_setting, s.OsVersion AS os_version
    FROM raw.la_update_summary AS s
    JOIN staging.vm_la_machines AS m
      ON m.la_key = lower(coalesce(nullif(s._ResourceId, ''), nullif(s.ResourceId, ''), ''))
            || '|' || lower(coalesce(s.VMUUID, '')) || '|' || lower(coalesce(s.SourceComputerId, ''))
            || '|' || lower(coalesce(s.Computer, ''))
    CROSS JOIN params
    WHERE s.TimeGenerated < params.cutoff AND (params.since IS NULL OR s.TimeGenerated >= params.since)
),
-- Dated snapshots up to the evaluation date; the undated file only for machines without one.
dated AS (
    SELECT s.* FROM staging.vm_snapshots AS s, params
    WHERE s.captured_at < params.cutoff AND (params.since IS NULL OR s.captured_at >= params.since)
),
snapshots AS (
    SELECT * FROM dated
    UNION ALL
    SELECT * FROM staging.vm_snapshots
    WHERE captured_at IS NULL AND vm_id NOT IN (SELECT vm_id FROM dated) AND CAST($since AS TIMESTAMPTZ) IS NULL
),
observed AS (
    SELECT vm_id, seen_at, 'wsus_server' AS attribute, nullif(wsus_server, '') AS value, 'log_analytics_summary' AS source FROM summary
    UNION ALL
    SELECT vm_id, seen_at, 'windows_update_setting', nullif(windows_update_setting, ''), 'log_analytics_summary' FROM summary
    UNION ALL
    SELECT vm_id, seen_at, 'os_version', nullif(os_version, ''), 'log_analytics_summary' FROM summary
    WHERE nullif(os_version, '') IS NOT NULL
    UNION ALL
    SELECT s.vm_id, s.captured_at, u.attribute, u.value, 'inventory'
    FROM snapshots AS s,
    LATERAL (VALUES
        ('patch_mode', s.patch_mode),
        ('assessment_mode', s.assessment_mode),
        ('automatic_updates_enabled', s.automatic_updates_enabled::VARCHAR),
        ('hotpatching_enabled', s.hotpatching_enabled::VARCHAR),
        ('bypass_platform_safety_checks', s.bypass_platform_safety_checks::VARCHAR),
        ('patch_mode_state', nullif(s.patch_mode_state, '')),
        ('environment', s.environment),
        ('criticality', s.criticality),
        ('os_name', s.os_name),
        ('os_version', s.os_version),
        ('image_sku', s.image_sku),
        ('image_version', s.image_version)
    ) AS u(attribute, value)
    -- The instance view's facts are absent from a plain list: no row rather than a NULL interval.
    WHERE u.attribute NOT IN ('os_name', 'os_version', 'patch_mode_state') OR u.value IS NOT NULL
),
-- An incremental build continues the current interval (temp view config_open_intervals, empty on a
-- full build) of each series with new observations. A series whose new observations all repeat the
-- value of its one current interval, which is dated (so before them), keeps that interval with
-- their count added: what the windows below would give, without running them over every series of
-- a new snapshot (on most days, almost all of them).
single_open AS (
    SELECT vm_id, attribute, source, any_value(value) AS value, any_value(valid_from) AS valid_from,
           any_value(observations) AS observations
    FROM config_open_intervals
    GROUP BY vm_id, attribute, source
    HAVING count(*) = 1 AND count(valid_from) = 1
),
continued AS (
    SELECT o.vm_id, o.attribute, o.source, o.value, o.valid_from, o.observations + count(*) AS observations
    FROM observed AS n
    JOIN single_open AS o USING (vm_id, attribute, source)
    GROUP BY o.vm_id, o.attribute, o.source, o.value, o.valid_from, o.observations
    HAVING bool_and(n.value IS NOT DISTINCT FROM o.value AND n.seen_at >= o.valid_from)
),
changed AS (
    SELECT n.*
    FROM observed AS n
    LEFT JOIN continued AS c USING (vm_id, attribute, source)
    WHERE c.vm_id IS NULL
),
-- Any other series with new observations continues from its current intervals: one row each,
-- weighing the observations it holds.
series AS (
    SELECT *, 1::BIGINT AS weight FROM changed
    UNION ALL
    SELECT o.vm_id, o.valid_from, o.attribute, o.value, o.source, o.observations
    FROM config_open_intervals AS o
    JOIN (SELECT DISTINCT vm_id, attribute, source FROM changed) USING (vm_id, attribute, source)
),
changes AS (
    SELECT
        *,
        CASE WHEN lag(value) OVER w IS NOT DISTINCT FROM value AND lag(seen_at) OVER w IS NOT NULL THEN 0 ELSE 1 END AS is_change
    FROM series
    WINDOW w AS (PARTITION BY vm_id, attribute, source ORDER BY seen_at)
),
islands AS (
    SELECT *, sum(is_change) OVER (PARTITION BY vm_id, attribute, source ORDER BY seen_at) AS island
    FROM changes
),
intervals AS (
    SELECT vm_id, attribute, source, any_value(value) AS value, min(seen_at) AS valid_from, sum(weight)::BIGINT AS observations
    FROM islands
    GROUP BY vm_id, attribute, source, island
)
SELECT
    vm_id,
    attribute,
    value,
    valid_from,
    lead(valid_from) OVER (PARTITION BY vm_id, attribute, source ORDER BY valid_from) AS valid_to,
    observations,
    source,
    params.as_of
FROM intervals
CROSS JOIN params
UNION ALL
SELECT c.vm_id, c.attribute, c.value, c.valid_from, NULL AS valid_to, c.observations, c.source, params.as_of
FROM continued AS c
CROSS JOIN params
ORDER BY vm_id, attribute, source, valid_from NULLS FIRST
