-- @table Which maintenance window patches each machine of the inventory on $as_of (the schedule reads it). A machine assigned to an InGuestPatch maintenance configuration (latest capture of azure/maintenance/ up to the evaluation date) is patched in that configuration's occurrences, since that is when Azure Update Manager runs; its maintenance-window tag is then only recorded, and flagged when it names another window. A machine on no configuration keeps the register window (registers/maintenance_windows.csv) its tag names. With several InGuestPatch assignments, the configuration named like the tag is used, else the first by id.
-- @column vm_id: Canonical machine id.
-- @column name: Machine name.
-- @column machine_kind: azure_vm, arc or non_azure.
-- @column in_inventory: True when the machine is in the inventory snapshot of the evaluation date.
-- @column environment: Environment tag.
-- @column os_type: Windows or Linux.
-- @column patch_mode: patchSettings.patchMode.
-- @column tag_window: The maintenance-window tag (NULL when absent).
-- @column tag_registered: True when the tag names a window of registers/maintenance_windows.csv.
-- @column configuration_id: Lower-case ARM id of the InGuestPatch maintenance configuration that patches the machine; NULL when none is assigned.
-- @column configuration_name: Name of that configuration.
-- @column configurations: InGuestPatch configurations the machine is assigned to.
-- @column window_id: What marts.remediation_schedule.window_id carries for the machine: configuration_id when assigned, else the tag.
-- @column window_source: maintenance_configuration, register_window (the tag names a registered window), unknown_window (the tag names none) or NULL (no assignment, no tag).
-- @column tag_disagrees: True when the machine is on a configuration and carries a tag that is not that configuration's name (the tag is not what patches it).
-- @column as_of: Evaluation date.
WITH
params AS (
    SELECT CAST($as_of AS DATE) AS as_of
),
assigned AS (  -- the machine's InGuestPatch assignments in force, from the same capture as their configuration
    SELECT a.vm_id, c.configuration_id, c.name
    FROM latest_capture('staging.maintenance_assignments', $as_of) AS a
    JOIN staging.maintenance_configurations AS c
      ON c.configuration_id = a.configuration_id AND c.captured_at IS NOT DISTINCT FROM a.captured_at
     AND lower(c.maintenance_scope) = 'inguestpatch'
    WHERE a.vm_id IS NOT NULL
),
machines AS (
    SELECT i.*, i.maintenance_window IN (SELECT window_id FROM staging.maintenance_windows) AS tag_registered
    FROM marts.vm_inventory AS i
),
chosen AS (
    SELECT m.vm_id, a.configuration_id, a.name AS configuration_name,
           count(a.configuration_id) OVER (PARTITION BY m.vm_id) AS configurations
    FROM machines AS m
    LEFT JOIN assigned AS a USING (vm_id)
    QUALIFY row_number() OVER (
        PARTITION BY m.vm_id ORDER BY lower(a.name) = lower(m.maintenance_window) DESC NULLS LAST, a.configuration_id
    ) = 1
)
SELECT
    m.vm_id,
    m.name,
    m.machine_kind,
    m.in_inventory,
    m.environment,
    m.os_type,
    m.patch_mode,
    m.maintenance_window AS tag_window,
    coalesce(m.tag_registered, false) AS tag_registered,
    c.configuration_id,
    c.configuration_name,
    c.configurations::INTEGER AS configurations,
    coalesce(c.configuration_id, m.maintenance_window) AS window_id,
    CASE
        WHEN c.configuration_id IS NOT NULL THEN 'maintenance_configuration'
        WHEN m.tag_registered THEN 'register_window'
        WHEN m.maintenance_window IS NOT NULL THEN 'unknown_window'
    END AS window_source,
    c.configuration_id IS NOT NULL AND m.maintenance_window IS NOT NULL
        AND lower(m.maintenance_window) <> lower(c.configuration_name) AS tag_disagrees,
    params.as_of
FROM machines AS m
JOIN chosen AS c USING (vm_id)
CROSS JOIN params
ORDER BY m.vm_id
