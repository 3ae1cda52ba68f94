-- @table Azure maintenance configurations (Microsoft.Maintenance/maintenanceConfigurations) from every capture of azure/maintenance/: schedule (recurEvery, startDateTime, duration, timeZone, as Azure states them) and, for scope InGuestPatch, what a run installs. Readers take the latest capture up to their evaluation date.
-- @column configuration_id: Lower-case ARM id of the configuration.
-- @column name: Configuration name.
-- @column location: Azure region.
-- @column maintenance_scope: InGuestPatch (guest OS patching by Azure Update Manager), Host, OSImage, Extension, SQLDB, SQLManagedInstance, Resource.
-- @column visibility: Custom or Public.
-- @column start_date_time: maintenanceWindow.startDateTime, local time of time_zone as Azure states it (YYYY-MM-DD hh:mm).
-- @column expiration_date_time: maintenanceWindow.expirationDateTime (local time), NULL when open.
-- @column duration: maintenanceWindow.duration (hh:mm).
-- @column time_zone: maintenanceWindow.timeZone (a Windows time-zone name such as "GMT Standard Time", or UTC).
-- @column recur_every: maintenanceWindow.recurEvery (e.g. "1Week Saturday", "1Month Second Tuesday Offset2").
-- @column reboot_setting: installPatches.rebootSetting: IfRequired, Never, Always.
-- @column windows_classifications: installPatches.windowsParameters.classificationsToInclude.
-- @column linux_classifications: installPatches.linuxParameters.classificationsToInclude.
-- @column captured_at: Capture time from the file name (UTC); NULL for an undated file.
-- @column source_file: The estate file.
SELECT
    lower(id) AS configuration_id,
    name,
    lower(replace(location, ' ', '')) AS location,
    properties->>'maintenanceScope' AS maintenance_scope,
    properties->>'visibility' AS visibility,
    properties->'maintenanceWindow'->>'startDateTime' AS start_date_time,
    nullif(properties->'maintenanceWindow'->>'expirationDateTime', '') AS expiration_date_time,
    properties->'maintenanceWindow'->>'duration' AS duration,
    properties->'maintenanceWindow'->>'timeZone' AS time_zone,
    properties->'maintenanceWindow'->>'recurEvery' AS recur_every,
    properties->'installPatches'->>'rebootSetting' AS reboot_setting,
    from_json(properties->'installPatches'->'windowsParameters'->'classificationsToInclude', '["VARCHAR"]')
        AS windows_classifications,
    from_json(properties->'installPatches'->'linuxParameters'->'classificationsToInclude', '["VARCHAR"]')
        AS linux_classifications,
    timezone('UTC', try_strptime(regexp_extract(source_file, '-(\d{8}T\d{6}Z)\.json$', 1), '%Y%m%dT%H%M%SZ'))
        AS captured_at,
    source_file
FROM raw.maintenance_resources
WHERE lower(type) = 'microsoft.maintenance/maintenanceconfigurations'
QUALIFY row_number() OVER (PARTITION BY lower(id), source_file ORDER BY name) = 1
ORDER BY configuration_id, captured_at NULLS FIRST
