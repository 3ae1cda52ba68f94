-- @table Each Log Analytics agent identity as received (Computer, SourceComputerId, VMUUID and the ARM id) in raw.la_update, raw.la_update_summary and raw.la_update_run_progress, with when it was seen, for staging.vm_aliases and staging.vm_la_machines. Kept by file (assets/inventory.py): a run reads only the export files added since the previous build and merges them in; a file changed or gone rebuilds it from every file.
-- @column Computer: Computer as reported.
-- @column SourceComputerId: The agent id as reported.
-- @column VMUUID: VMUUID as reported.
-- @column resource_id: _ResourceId, else ResourceId, as reported (NULL when both are empty).
-- @column computer_environment: The greatest ComputerEnvironment reported with the identity.
-- @column first_seen_at: First TimeGenerated with the identity.
-- @column last_seen_at: Last TimeGenerated with the identity.
WITH
-- $files: the export files to read (NULL: all).
la_rows AS (
    SELECT TimeGenerated, Computer, ComputerEnvironment, SourceComputerId, VMUUID, _ResourceId, ResourceId
    FROM raw.la_update
    WHERE $files::VARCHAR[] IS NULL OR list_contains($files::VARCHAR[], source_file)
    UNION ALL
    SELECT TimeGenerated, Computer, ComputerEnvironment, SourceComputerId, VMUUID, _ResourceId, ResourceId
    FROM raw.la_update_summary
    WHERE $files::VARCHAR[] IS NULL OR list_contains($files::VARCHAR[], source_file)
    UNION ALL
    SELECT TimeGenerated, Computer, ComputerEnvironment, SourceComputerId, VMUUID, _ResourceId, ResourceId
    FROM raw.la_update_run_progress
    WHERE $files::VARCHAR[] IS NULL OR list_contains($files::VARCHAR[], source_file)
)
SELECT
    Computer,
    SourceComputerId,
    VMUUID,
    coalesce(nullif(_ResourceId, ''), nullif(ResourceId, '')) AS resource_id,
    max(ComputerEnvironment) AS computer_environment,
    min(TimeGenerated) AS first_seen_at,
    max(TimeGenerated) AS last_seen_at
FROM la_rows
GROUP BY ALL
