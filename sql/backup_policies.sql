-- @table Azure Backup policies of virtual machines (Microsoft.RecoveryServices/vaults/backupPolicies, backupManagementType AzureIaasVM) from every capture of azure/backup/, with how often they back up: one row per policy and capture; readers take the latest capture up to their evaluation date.
-- @column policy_id: Lower-case ARM id of the policy.
-- @column name: Policy name.
-- @column schedule_run_frequency: schedulePolicy.scheduleRunFrequency: Hourly, Daily or Weekly.
-- @column frequency_hours: Hours between two scheduled backups: hourlySchedule.interval for Hourly, 24 for Daily, 168 for Weekly (the longest gap of a weekly schedule on one day; conservative for more days).
-- @column captured_at: Capture time from the file name (UTC); NULL for an undated file.
-- @column source_file: The estate file.
SELECT
    lower(id) AS policy_id,
    name,
    properties->'schedulePolicy'->>'scheduleRunFrequency' AS schedule_run_frequency,
    CASE properties->'schedulePolicy'->>'scheduleRunFrequency'
        WHEN 'Hourly' THEN CAST(properties->'schedulePolicy'->'hourlySchedule'->>'interval' AS INTEGER)
        WHEN 'Daily' THEN 24
        WHEN 'Weekly' THEN 168
    END AS frequency_hours,
    timezone('UTC', try_strptime(regexp_extract(source_file, '-(\d{8}T\d{6}Z)\.json$', 1), '%Y%m%dT%H%M%SZ'))
        AS captured_at,
    source_file
FROM raw.backup_resources
WHERE lower(type) = 'microsoft.recoveryservices/vaults/backuppolicies'
  AND properties->>'backupManagementType' = 'AzureIaasVM'
QUALIFY row_number() OVER (PARTITION BY lower(id), source_file ORDER BY name) = 1
ORDER BY policy_id, captured_at NULLS FIRST, source_file
