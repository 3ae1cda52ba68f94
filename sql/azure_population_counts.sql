-- @summary Per Resource Graph file: rows Azure reported (totalRecords), rows in the file, rows loaded.
-- @group stage6_patch_monitoring
-- @depends raw.patch_assessment_resources, raw.patch_installation_resources
-- @table Population completeness of the Resource Graph files (azure/resource_graph/): one row per file, with the rows Azure said its query had (totalRecords, per query and subscription batch of a live capture), the rows the file holds, and the rows the warehouse loaded from it. A live run fails before writing when Azure's figure and the rows fetched differ; the blocking check resource_graph_population_complete fails when a file's figures differ. Exports that do not carry totalRecords have it NULL.
-- @column arg_table: Resource Graph table: patchassessmentresources or patchinstallationresources.
-- @column source_file: The file, relative to the estate (as in the raw tables' source_file).
-- @column captured_at: When a live capture was taken (from its name), UTC; NULL for an export.
-- @column subscriptions: The subscriptions the query covered (one batch of a live capture); NULL when the file does not say.
-- @column reported_rows: totalRecords: the rows Azure reported for the query; NULL when the file does not carry it.
-- @column fetched_rows: count: the rows the file says it holds; NULL when absent.
-- @column loaded_rows: Rows of raw.patch_assessment_resources or raw.patch_installation_resources loaded from the file's content (matched by SHA-256, so a renamed or copied file counts the rows held under its first name).
-- @column complete: reported_rows = loaded_rows (and = fetched_rows when given); NULL when Azure's figure is unknown.
WITH
loaded AS (
    -- by content: a file renamed or copied after it was loaded is held under its first name
    SELECT 'patchassessmentresources' AS arg_table, source_sha256, count(*) AS n
    FROM raw.patch_assessment_resources GROUP BY ALL
    UNION ALL
    SELECT 'patchinstallationresources', source_sha256, count(*)
    FROM raw.patch_installation_resources GROUP BY ALL
)
SELECT c.arg_table, c.source_file,
       try_strptime(regexp_extract(c.source_file, '-live-(\d{8}T\d{6}Z)', 1), '%Y%m%dT%H%M%SZ')::TIMESTAMP
           AT TIME ZONE 'UTC' AS captured_at,
       c.subscriptions, c.reported_rows, c.fetched_rows,
       coalesce(l.n, 0) AS loaded_rows,
       CASE WHEN c.reported_rows IS NOT NULL
            THEN c.reported_rows = coalesce(l.n, 0) AND coalesce(c.fetched_rows, c.reported_rows) = c.reported_rows
       END AS complete
FROM population_files AS c
LEFT JOIN loaded AS l USING (arg_table, source_sha256)
ORDER BY c.arg_table, c.source_file
