-- @table Azure Backup protected items of virtual machines (Microsoft.RecoveryServices/vaults/backupFabrics/protectionContainers/protectedItems, backupManagementType AzureIaasVM) from every capture of azure/backup/: one row per item and capture, so the protection of a machine on any past date is known.
-- @column item_id: Lower-case ARM id of the protected item.
-- @column vault_id: Lower-case ARM id of the Recovery Services vault holding it.
-- @column vm_id: The protected machine: properties.sourceResourceId, else virtualMachineId (lower-case ARM id).
-- @column protection_state: properties.protectionState: IRPending, Protected, ProtectionError, ProtectionStopped, ProtectionPaused.
-- @column health_status: properties.healthStatus (Passed, ActionRequired, ActionSuggested), else protectionStatus (Healthy, Unhealthy).
-- @column last_backup_status: properties.lastBackupStatus (Completed, Failed, ...).
-- @column last_backup_at: properties.lastBackupTime (UTC): the last backup attempt, successful or not.
-- @column last_recovery_point_at: properties.lastRecoveryPoint (UTC), else last_backup_at when the last backup completed; NULL when neither says.
-- @column policy_id: Lower-case ARM id of the backup policy.
-- @column policy_name: properties.policyName, else the last segment of policy_id.
-- @column captured_at: Capture time from the file name (UTC); NULL for an undated file.
-- @column source_file: The estate file.
SELECT
    lower(id) AS item_id,
    split_part(lower(id), '/backupfabrics/', 1) AS vault_id,
    lower(coalesce(nullif(properties->>'sourceResourceId', ''), properties->>'virtualMachineId')) AS vm_id,
    properties->>'protectionState' AS protection_state,
    coalesce(nullif(properties->>'healthStatus', ''), properties->>'protectionStatus') AS health_status,
    properties->>'lastBackupStatus' AS last_backup_status,
    CAST(properties->>'lastBackupTime' AS TIMESTAMPTZ) AS last_backup_at,
    coalesce(CAST(nullif(properties->>'lastRecoveryPoint', '') AS TIMESTAMPTZ),
             CASE WHEN properties->>'lastBackupStatus' = 'Completed'
                  THEN CAST(properties->>'lastBackupTime' AS TIMESTAMPTZ) END) AS last_recovery_point_at,
    lower(properties->>'policyId') AS policy_id,
    coalesce(nullif(properties->>'policyName', ''), regexp_extract(properties->>'policyId', '[^/]+$')) AS policy_name,
    timezone('UTC', try_strptime(regexp_extract(source_file, '-(\d{8}T\d{6}Z)\.json$', 1), '%Y%m%dT%H%M%SZ'))
        AS captured_at,
    source_file
FROM raw.backup_resources
WHERE lower(type) = 'microsoft.recoveryservices/vaults/backupfabrics/protectioncontainers/protecteditems'
  AND properties->>'backupManagementType' = 'AzureIaasVM'
QUALIFY row_number() OVER (PARTITION BY lower(id), source_file ORDER BY name) = 1
ORDER BY vm_id, captured_at NULLS FIRST, item_id
