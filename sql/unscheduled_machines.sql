-- @table Azure machines in the inventory on $as_of that no schedule covers (marts.vm_maintenance_windows): no assignment to an InGuestPatch maintenance configuration in the latest capture of azure/maintenance/, and no maintenance-window tag naming a window of registers/maintenance_windows.csv. Nothing plans their patching (NIST SP 800-40r4 3.4: every asset in a maintenance group); each is also a machine_unscheduled finding.
-- @column vm_id: Canonical machine id.
-- @column name: Machine name.
-- @column environment: Environment tag.
-- @column os_type: Windows or Linux.
-- @column patch_mode: patchSettings.patchMode.
-- @column maintenance_window: The maintenance-window tag, when it names no registered window (NULL when absent).
-- @column as_of: Evaluation date.
SELECT vm_id, name, environment, os_type, patch_mode, tag_window AS maintenance_window, CAST($as_of AS DATE) AS as_of
FROM marts.vm_maintenance_windows
WHERE in_inventory AND machine_kind = 'azure_vm' AND configuration_id IS NULL AND NOT tag_registered
ORDER BY vm_id
