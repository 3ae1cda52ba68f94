-- @table How long one remediation step takes, estimated from the installation history: per OS type, the median over installation runs of the run's duration divided by its steps (patches installed or failed, plus one for the reboot). The schedule uses it to fill maintenance windows.
-- @column os_type: Windows or Linux (from the installation result).
-- @column runs: Installation runs the estimate rests on.
-- @column minutes_per_step: Median minutes per step (install or reboot), at least 1.
-- One parse of each result document for all the fields (->> would parse it once per field).
WITH results AS (
    SELECT json_extract_string(properties, ['osType', 'startDateTime', 'lastModifiedDateTime',
                                            'installedPatchCount', 'failedPatchCount', 'status']) AS f
    FROM raw.patch_installation_resources
    WHERE type ILIKE '%/patchinstallationresults'
),
runs AS (
    SELECT
        f[1] AS os_type,
        date_diff('second', f[2]::TIMESTAMPTZ, f[3]::TIMESTAMPTZ) / 60.0 AS minutes,
        coalesce(f[4]::INTEGER, 0) + coalesce(f[5]::INTEGER, 0) + 1 AS steps
    FROM results
    WHERE f[6] IN ('Succeeded', 'Failed', 'CompletedWithWarnings')
)
SELECT
    os_type,
    count(*) AS runs,
    greatest(1.0, round(median(minutes / steps), 1)) AS minutes_per_step
FROM runs
WHERE minutes > 0 AND os_type IS NOT NULL
GROUP BY os_type
ORDER BY os_type
