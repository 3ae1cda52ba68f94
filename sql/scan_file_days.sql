-- @table The UTC days each raw scan file's rows can give observations or assessment runs for (every time the rows carry, so a range that holds every observed_at and assessed_at the file yields): what an incremental build of staging.patch_observations and staging.assessment_runs recomputes when the file is new, changed or replaced. One row per raw table and file version; a file whose rows carry no time has NULL days.
-- @column raw_table: The raw scan table.
-- @column source_file: The estate file.
-- @column source_sha256: sha256 of the file's bytes.
-- @column first_day: Earliest UTC day of a time in the file's rows.
-- @column last_day: Latest UTC day of a time in the file's rows.
WITH
wanted AS (
    SELECT DISTINCT unnest(CAST($files AS VARCHAR[])) AS source_file
),
arg AS (
    SELECT 'raw.patch_assessment_resources' AS raw_table, source_file, source_sha256,
           json_transform(properties, '{"lastModifiedDateTime": "VARCHAR", "startDateTime": "VARCHAR"}') AS f
    FROM raw.patch_assessment_resources SEMI JOIN wanted USING (source_file)
    UNION ALL
    SELECT 'raw.patch_installation_resources', source_file, source_sha256,
           json_transform(properties, '{"lastModifiedDateTime": "VARCHAR", "startDateTime": "VARCHAR"}')
    FROM raw.patch_installation_resources SEMI JOIN wanted USING (source_file)
),
operations AS (
    SELECT source_file, source_sha256, coalesce(result->'properties'->'output', result) AS r
    FROM raw.patch_operations SEMI JOIN wanted USING (source_file)
),
times AS (
    SELECT raw_table, source_file, source_sha256, try_cast(f.lastModifiedDateTime AS TIMESTAMPTZ) AS t FROM arg
    UNION ALL
    SELECT raw_table, source_file, source_sha256, try_cast(f.startDateTime AS TIMESTAMPTZ) FROM arg
    UNION ALL
    SELECT 'raw.patch_operations', source_file, source_sha256, try_cast(r->>'lastModifiedDateTime' AS TIMESTAMPTZ)
    FROM operations
    UNION ALL
    SELECT 'raw.patch_operations', source_file, source_sha256, try_cast(r->>'startDateTime' AS TIMESTAMPTZ)
    FROM operations
    UNION ALL
    -- An installation result's patch may carry the only time.
    SELECT 'raw.patch_operations', source_file, source_sha256, try_cast(p->>'lastModifiedDateTime' AS TIMESTAMPTZ)
    FROM (SELECT source_file, source_sha256,
                 unnest(from_json(coalesce(r->'patches', '[]'), '["JSON"]')) AS p FROM operations)
    UNION ALL
    SELECT 'raw.la_update', source_file, source_sha256, TimeGenerated
    FROM raw.la_update SEMI JOIN wanted USING (source_file)
    UNION ALL
    SELECT 'raw.la_update_summary', source_file, source_sha256, TimeGenerated
    FROM raw.la_update_summary SEMI JOIN wanted USING (source_file)
    UNION ALL
    SELECT 'raw.la_update_run_progress', source_file, source_sha256, TimeGenerated
    FROM raw.la_update_run_progress SEMI JOIN wanted USING (source_file)
)
SELECT
    raw_table,
    source_file,
    source_sha256,
    min(timezone('UTC', t))::DATE AS first_day,
    max(timezone('UTC', t))::DATE AS last_day
FROM times
GROUP BY ALL
ORDER BY raw_table, source_file
