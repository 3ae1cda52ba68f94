-- @table Azure machines in the inventory on $as_of that no schedule covers: no assignment to an InGuestPatch maintenance configuration in the latest capture of azure/maintenance/, and no maintenance-window tag naming a window of registers/maintenance_windows.csv. Nothing plans their patching (NIST SP 800-40r4 3.4: every asset in a maintenance group).
-- @column vm_id: Canonical machine id.
-- @column name: Machine name.
-- @column environment: Environment tag.
-- @column os_type: Windows or Linux.
-- @column patch_mode: patchSettings.patchMode.
-- @column maintenance_window: The maintenance-window tag, when it names no registered window (NULL when absent).
-- @column as_of: Evaluation date.
WITH
params AS (
    SELECT CAST($as_of AS DATE) AS as_of, timezone('UTC', (CAST($as_of AS DATE) + 1)::TIMESTAMP) AS cutoff
),
capture AS (
    SELECT max(captured_at) AS at FROM staging.maintenance_assignments, params WHERE captured_at < params.cutoff
),
assigned AS (
    SELECT DISTINCT a.vm_id
    FROM staging.maintenance_assignments AS a
    JOIN staging.maintenance_configurations AS c
      ON c.configuration_id = a.configuration_id AND c.captured_at IS NOT DISTINCT FROM a.captured_at
     AND lower(c.maintenance_scope) = 'inguestpatch'
    CROSS JOIN capture
    WHERE a.vm_id IS NOT NULL AND (a.captured_at = capture.at OR (capture.at IS NULL AND a.captured_at IS NULL))
)
SELECT i.vm_id, i.name, i.environment, i.os_type, i.patch_mode, i.maintenance_window, params.as_of
FROM marts.vm_inventory AS i
CROSS JOIN params
WHERE i.in_inventory AND i.machine_kind = 'azure_vm'
  AND i.vm_id NOT IN (SELECT vm_id FROM assigned)
  AND (i.maintenance_window IS NULL OR i.maintenance_window NOT IN (SELECT window_id FROM staging.maintenance_windows))
ORDER BY i.vm_id
