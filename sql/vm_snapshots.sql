-- @table Every machine in every inventory snapshot: azure/virtual_machines.json (undated) and the dated azure/virtual_machines/virtual_machines-<YYYYMMDDTHHMMSSZ>.json captures, with the configuration each one shows. marts.vm_inventory takes each machine's latest snapshot up to the evaluation date; marts.vm_config_history turns the sequence into validity intervals.
-- @column vm_id: Lower-case ARM id.
-- @column captured_at: Capture time from the file name (UTC); NULL for the undated azure/virtual_machines.json.
-- @column source_file: The snapshot file.
-- @column r: The resource as received (JSON).
-- @column name: Resource name.
-- @column location: Azure region, lower-case without spaces.
-- @column computer_name: Guest computer name.
-- @column vm_uuid: The VM's vmId (GUID).
-- @column os_type: Windows or Linux (storageProfile.osDisk.osType).
-- @column os_name: instanceView.osName (absent from a plain list).
-- @column os_version: instanceView.osVersion (absent from a plain list).
-- @column image_publisher: Marketplace image publisher.
-- @column image_offer: Marketplace image offer.
-- @column image_sku: Marketplace image SKU.
-- @column image_version: Exact image version, else the requested one.
-- @column vm_size: VM size.
-- @column power_state: From the instance view statuses, else az --show-details powerState.
-- @column provisioning_state: ARM provisioning state.
-- @column time_created: When the VM was created.
-- @column patch_mode: osProfile.windowsConfiguration / linuxConfiguration patchSettings.patchMode.
-- @column assessment_mode: patchSettings.assessmentMode.
-- @column hotpatching_enabled: patchSettings.enableHotpatching (Windows).
-- @column automatic_updates_enabled: windowsConfiguration.enableAutomaticUpdates (Windows).
-- @column bypass_platform_safety_checks: patchSettings.automaticByPlatformSettings.bypassPlatformSafetyChecksOnUserSchedule (true: patched only by a customer-managed schedule).
-- @column patch_mode_state: instanceView.patchStatus.configurationStatuses PatchModeConfigurationState (Ready, Pending, Failed ...): whether the guest applied the patch mode; NULL without an instance view.
-- @column environment: Tag environment, lower-case (keys compared case-insensitively).
-- @column criticality: Tag criticality, lower-case.
WITH
snapshots AS (
    SELECT
        lower(id) AS vm_id,
        timezone('UTC', try_strptime(
            regexp_extract(source_file, 'virtual_machines-(\d{8}T\d{6}Z)\.json$', 1), '%Y%m%dT%H%M%SZ'
        )) AS captured_at,
        source_file,
        resource AS r,
        CASE WHEN json_type(resource->'properties') = 'OBJECT' THEN resource->'properties' ELSE resource END AS p
    FROM raw.virtual_machines
    -- $captures: the snapshot files to compute (NULL: all); each file's rows depend on it alone.
    WHERE $captures::VARCHAR[] IS NULL OR list_contains($captures::VARCHAR[], source_file)
    -- The same machine twice in one file (identical rows): one copy.
    QUALIFY row_number() OVER (PARTITION BY lower(id), source_file ORDER BY source_file) = 1
),
tags AS (
    SELECT vm_id, source_file, lower(trim(k)) AS tag_key, trim(r->'tags'->>k) AS tag_value
    FROM (
        SELECT vm_id, source_file, r, unnest(json_keys(r->'tags')) AS k
        FROM snapshots
        WHERE json_type(r->'tags') = 'OBJECT'
    )
),
tag_values AS (
    SELECT
        vm_id,
        source_file,
        lower(max(tag_value) FILTER (WHERE tag_key = 'environment')) AS environment,
        lower(max(tag_value) FILTER (WHERE tag_key = 'criticality')) AS criticality
    FROM tags
    GROUP BY ALL
)
SELECT
    s.vm_id,
    s.captured_at,
    s.source_file,
    s.r,
    r->>'name' AS name,
    lower(replace(r->>'location', ' ', '')) AS location,
    coalesce(p->'osProfile'->>'computerName', p->'instanceView'->>'computerName') AS computer_name,
    lower(p->>'vmId') AS vm_uuid,
    p->'storageProfile'->'osDisk'->>'osType' AS os_type,
    p->'instanceView'->>'osName' AS os_name,
    p->'instanceView'->>'osVersion' AS os_version,
    p->'storageProfile'->'imageReference'->>'publisher' AS image_publisher,
    p->'storageProfile'->'imageReference'->>'offer' AS image_offer,
    p->'storageProfile'->'imageReference'->>'sku' AS image_sku,
    coalesce(
        p->'storageProfile'->'imageReference'->>'exactVersion',
        p->'storageProfile'->'imageReference'->>'version'
    ) AS image_version,
    p->'hardwareProfile'->>'vmSize' AS vm_size,
    coalesce(
        lower(split_part(list_filter(
            from_json(p->'instanceView'->'statuses', '[{"code": "VARCHAR"}]'),
            lambda s: s.code LIKE 'PowerState/%'
        )[1].code, '/', 2)),
        -- az vm list --show-details: "VM running", "VM deallocated"
        nullif(regexp_replace(lower(r->>'powerState'), '^vm ', ''), '')
    ) AS power_state,
    p->>'provisioningState' AS provisioning_state,
    try_cast(p->>'timeCreated' AS TIMESTAMPTZ) AS time_created,
    coalesce(
        p->'osProfile'->'windowsConfiguration'->'patchSettings'->>'patchMode',
        p->'osProfile'->'linuxConfiguration'->'patchSettings'->>'patchMode'
    ) AS patch_mode,
    coalesce(
        p->'osProfile'->'windowsConfiguration'->'patchSettings'->>'assessmentMode',
        p->'osProfile'->'linuxConfiguration'->'patchSettings'->>'assessmentMode'
    ) AS assessment_mode,
    try_cast(p->'osProfile'->'windowsConfiguration'->'patchSettings'->>'enableHotpatching' AS BOOLEAN) AS hotpatching_enabled,
    try_cast(p->'osProfile'->'windowsConfiguration'->>'enableAutomaticUpdates' AS BOOLEAN) AS automatic_updates_enabled,
    try_cast(coalesce(
        p->'osProfile'->'windowsConfiguration'->'patchSettings'->'automaticByPlatformSettings'->>'bypassPlatformSafetyChecksOnUserSchedule',
        p->'osProfile'->'linuxConfiguration'->'patchSettings'->'automaticByPlatformSettings'->>'bypassPlatformSafetyChecksOnUserSchedule'
    ) AS BOOLEAN) AS bypass_platform_safety_checks,
    split_part(list_filter(
        from_json(p->'instanceView'->'patchStatus'->'configurationStatuses', '[{"code": "VARCHAR"}]'),
        lambda s: s.code LIKE 'PatchModeConfigurationState/%'
    )[1].code, '/', 2) AS patch_mode_state,
    t.environment,
    t.criticality
FROM snapshots AS s
LEFT JOIN tag_values AS t USING (vm_id, source_file)
ORDER BY s.vm_id, s.captured_at NULLS FIRST, s.source_file
