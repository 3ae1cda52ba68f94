-- @table How long one remediation step takes, estimated from the installation history: per OS type, the median over installation runs of the run's duration divided by its steps (patches installed or failed, plus one for the reboot). The schedule uses it to fill maintenance windows.
-- @column os_type: Windows or Linux (from the installation result).
-- @column runs: Installation runs the estimate rests on.
-- @column minutes_per_step: Median minutes per step (install or reboot), at least 1.
WITH runs AS (
    SELECT
        properties->>'osType' AS os_type,
        date_diff('second',
                  (properties->>'startDateTime')::TIMESTAMPTZ,
                  (properties->>'lastModifiedDateTime')::TIMESTAMPTZ) / 60.0 AS minutes,
        coalesce((properties->>'installedPatchCount')::INTEGER, 0)
            + coalesce((properties->>'failedPatchCount')::INTEGER, 0) + 1 AS steps
    FROM raw.patch_installation_resources
    WHERE type ILIKE '%/patchinstallationresults'
      AND properties->>'status' IN ('Succeeded', 'Failed', 'CompletedWithWarnings')
)
SELECT
    os_type,
    count(*) AS runs,
    greatest(1.0, round(median(minutes / steps), 1)) AS minutes_per_step
FROM runs
WHERE minutes > 0 AND os_type IS NOT NULL
GROUP BY os_type
ORDER BY os_type
