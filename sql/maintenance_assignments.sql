-- @table Azure configuration assignments (Microsoft.Maintenance/configurationAssignments) from every capture of azure/maintenance/: which machine is on which maintenance configuration. An assignment with a filter (a dynamic scope over a subscription) names no machine: it is kept with vm_id NULL and is not resolved to machines. Readers take the latest capture up to their evaluation date.
-- @column assignment_id: Lower-case ARM id of the assignment.
-- @column vm_id: The assigned machine: properties.resourceId, else the id before /providers/microsoft.maintenance/ (lower-case); NULL for a dynamic scope.
-- @column configuration_id: Lower-case ARM id of the maintenance configuration.
-- @column dynamic_scope: True when the assignment selects machines by a filter (not resolved here).
-- @column captured_at: Capture time from the file name (UTC); NULL for an undated file.
-- @column source_file: The estate file.
WITH rows AS (
    SELECT
        lower(id) AS assignment_id,
        json_type(properties->'filter') = 'OBJECT' AS dynamic_scope,
        lower(coalesce(
            nullif(properties->>'resourceId', ''),
            nullif(split_part(lower(id), '/providers/microsoft.maintenance/', 1), lower(id))
        )) AS target_id,
        lower(properties->>'maintenanceConfigurationId') AS configuration_id,
        timezone('UTC', try_strptime(regexp_extract(source_file, '-(\d{8}T\d{6}Z)\.json$', 1), '%Y%m%dT%H%M%SZ'))
            AS captured_at,
        source_file
    FROM raw.maintenance_resources
    WHERE lower(type) = 'microsoft.maintenance/configurationassignments'
)
SELECT
    assignment_id,
    CASE WHEN NOT coalesce(dynamic_scope, false) AND target_id LIKE '/subscriptions/%/providers/%' THEN target_id END AS vm_id,
    configuration_id,
    coalesce(dynamic_scope, false) AS dynamic_scope,
    captured_at,
    source_file
FROM rows
QUALIFY row_number() OVER (PARTITION BY assignment_id, source_file ORDER BY configuration_id) = 1
ORDER BY assignment_id, captured_at NULLS FIRST
