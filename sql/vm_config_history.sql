-- @table Security-relevant configuration of each machine as validity intervals. Log Analytics UpdateSummary gives a time series (update server, Windows Update setting): consecutive records with the same value form one interval. The inventory is one snapshot, so its settings (patch mode, assessment mode, automatic updates, hotpatching, criticality tag) are one open interval with valid_from NULL (known only as of the snapshot); each new snapshot loaded over time adds its own interval.
-- @column vm_id: Canonical machine id.
-- @column attribute: patch_mode, assessment_mode, automatic_updates_enabled, hotpatching_enabled, criticality, wsus_server or windows_update_setting.
-- @column value: The setting's value as text (NULL = not set).
-- @column valid_from: Start of the interval (first record with this value); NULL when unknown.
-- @column valid_to: Start of the next interval; NULL while current.
-- @column source: log_analytics_summary or inventory.
-- @column as_of: Evaluation date; records after its end are ignored.
WITH
params AS (
    SELECT
        CAST($as_of AS DATE) AS as_of,
        timezone('UTC', (CAST($as_of AS DATE) + 1)::TIMESTAMP) AS cutoff
),
summary AS (
    SELECT m.vm_id, s.TimeGenerated AS seen_at, s.WSUSServer AS wsus_server, s.WindowsUpdateSetting AS windows_update_setting
    FROM raw.la_update_summary AS s
    JOIN staging.vm_la_machines AS m
      ON m.la_key = lower(coalesce(nullif(s._ResourceId, ''), nullif(s.ResourceId, ''), ''))
            || '|' || lower(coalesce(s.VMUUID, '')) || '|' || lower(coalesce(s.SourceComputerId, ''))
            || '|' || lower(coalesce(s.Computer, ''))
    CROSS JOIN params
    WHERE s.TimeGenerated < params.cutoff
),
series AS (
    SELECT vm_id, seen_at, 'wsus_server' AS attribute, nullif(wsus_server, '') AS value FROM summary
    UNION ALL
    SELECT vm_id, seen_at, 'windows_update_setting', nullif(windows_update_setting, '') FROM summary
),
changes AS (
    SELECT
        *,
        CASE WHEN lag(value) OVER w IS NOT DISTINCT FROM value AND lag(seen_at) OVER w IS NOT NULL THEN 0 ELSE 1 END AS is_change
    FROM series
    WINDOW w AS (PARTITION BY vm_id, attribute ORDER BY seen_at)
),
islands AS (
    SELECT *, sum(is_change) OVER (PARTITION BY vm_id, attribute ORDER BY seen_at) AS island
    FROM changes
),
intervals AS (
    SELECT vm_id, attribute, any_value(value) AS value, min(seen_at) AS valid_from
    FROM islands
    GROUP BY vm_id, attribute, island
),
la AS (
    SELECT
        vm_id,
        attribute,
        value,
        valid_from,
        lead(valid_from) OVER (PARTITION BY vm_id, attribute ORDER BY valid_from) AS valid_to,
        'log_analytics_summary' AS source
    FROM intervals
),
snapshot AS (
    SELECT i.vm_id, u.attribute, u.value, NULL::TIMESTAMPTZ AS valid_from, NULL::TIMESTAMPTZ AS valid_to, 'inventory' AS source
    FROM marts.vm_inventory AS i,
    LATERAL (VALUES
        ('patch_mode', i.patch_mode),
        ('assessment_mode', i.assessment_mode),
        ('automatic_updates_enabled', i.automatic_updates_enabled::VARCHAR),
        ('hotpatching_enabled', i.hotpatching_enabled::VARCHAR),
        ('criticality', i.criticality)
    ) AS u(attribute, value)
    WHERE i.in_inventory
)
SELECT h.*, params.as_of
FROM (SELECT * FROM la UNION ALL SELECT * FROM snapshot) AS h
CROSS JOIN params
ORDER BY vm_id, attribute, valid_from NULLS FIRST
