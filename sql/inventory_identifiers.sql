-- @table The identifiers the inventory snapshots give each machine (raw.virtual_machines), one row per distinct combination, for staging.vm_aliases. Kept by file (assets/inventory.py): a run reads only the snapshot files added since the previous build; a file changed or gone rebuilds it from every file.
-- @column vm_id: The machine's lower-case ARM id.
-- @column vm_uuid: Its vmId (properties.vmId, else vmId), lower-case.
-- @column computer_name: Its computer name (osProfile, else the instance view), lower-case.
-- @column name: Its resource name, lower-case.
SELECT DISTINCT
    lower(id) AS vm_id,
    lower(coalesce(f[1], f[2])) AS vm_uuid,
    lower(coalesce(f[3], f[4], f[5])) AS computer_name,
    lower(name) AS name
FROM (
    -- All paths in one call: the document is parsed once per row, not once per -> step.
    SELECT
        id,
        name,
        json_extract_string(resource, [
            '$.properties.vmId', '$.vmId', '$.properties.osProfile.computerName', '$.osProfile.computerName',
            '$.properties.instanceView.computerName'
        ]) AS f
    FROM raw.virtual_machines
    -- $files: the snapshot files to read (NULL: all).
    WHERE $files::VARCHAR[] IS NULL OR list_contains($files::VARCHAR[], source_file)
)
