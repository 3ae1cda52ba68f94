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
-- Each key is read from the tags object, not from the whole document (parsed once per key).
tags AS (
    SELECT vm_id, source_file, lower(trim(k)) AS tag_key, trim(t->>k) AS tag_value
    FROM (
        SELECT vm_id, source_file, t, unnest(json_keys(t)) AS k
        FROM (SELECT vm_id, source_file, r->'tags' AS t FROM snapshots)
        WHERE json_type(t) = 'OBJECT'
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
),
-- Each snapshot's document is parsed once into a struct (every -> would parse it again); a
-- field of another JSON type than the one named reads as with -> / ->> (NULL, or its JSON text).
parsed AS (
    SELECT
        vm_id,
        captured_at,
        source_file,
        r,
        json_transform(r, '{"name": "VARCHAR", "location": "VARCHAR", "powerState": "VARCHAR"}') AS top,
        json_transform(p, '{
            "osProfile": {"computerName": "VARCHAR",
                "windowsConfiguration": {"enableAutomaticUpdates": "VARCHAR", "patchSettings": {
                    "patchMode": "VARCHAR", "assessmentMode": "VARCHAR", "enableHotpatching": "VARCHAR",
                    "automaticByPlatformSettings": {"bypassPlatformSafetyChecksOnUserSchedule": "VARCHAR"}}},
                "linuxConfiguration": {"patchSettings": {"patchMode": "VARCHAR", "assessmentMode": "VARCHAR",
                    "automaticByPlatformSettings": {"bypassPlatformSafetyChecksOnUserSchedule": "VARCHAR"}}}},
            "instanceView": {"computerName": "VARCHAR", "osName": "VARCHAR", "osVersion": "VARCHAR",
                "statuses": [{"code": "VARCHAR"}], "patchStatus": {"configurationStatuses": [{"code": "VARCHAR"}]}},
            "vmId": "VARCHAR",
            "storageProfile": {"osDisk": {"osType": "VARCHAR"}, "imageReference": {"publisher": "VARCHAR",
                "offer": "VARCHAR", "sku": "VARCHAR", "exactVersion": "VARCHAR", "version": "VARCHAR"}},
            "hardwareProfile": {"vmSize": "VARCHAR"},
            "provisioningState": "VARCHAR",
            "timeCreated": "VARCHAR"}') AS f
    FROM snapshots
)
SELECT
    s.vm_id,
    s.captured_at,
    s.source_file,
    s.r,
    s.top.name,
    lower(replace(s.top.location, ' ', '')) AS location,
    coalesce(s.f.osProfile.computerName, s.f.instanceView.computerName) AS computer_name,
    lower(s.f.vmId) AS vm_uuid,
    s.f.storageProfile.osDisk.osType AS os_type,
    s.f.instanceView.osName AS os_name,
    s.f.instanceView.osVersion AS os_version,
    s.f.storageProfile.imageReference.publisher AS image_publisher,
    s.f.storageProfile.imageReference.offer AS image_offer,
    s.f.storageProfile.imageReference.sku AS image_sku,
    coalesce(s.f.storageProfile.imageReference.exactVersion, s.f.storageProfile.imageReference.version) AS image_version,
    s.f.hardwareProfile.vmSize AS vm_size,
    coalesce(
        lower(split_part(list_filter(s.f.instanceView.statuses, lambda x: x.code LIKE 'PowerState/%')[1].code, '/', 2)),  -- noqa: RF01
        -- az vm list --show-details: "VM running", "VM deallocated"
        nullif(regexp_replace(lower(s.top.powerState), '^vm ', ''), '')
    ) AS power_state,
    s.f.provisioningState AS provisioning_state,
    try_cast(s.f.timeCreated AS TIMESTAMPTZ) AS time_created,
    coalesce(
        s.f.osProfile.windowsConfiguration.patchSettings.patchMode,
        s.f.osProfile.linuxConfiguration.patchSettings.patchMode
    ) AS patch_mode,
    coalesce(
        s.f.osProfile.windowsConfiguration.patchSettings.assessmentMode,
        s.f.osProfile.linuxConfiguration.patchSettings.assessmentMode
    ) AS assessment_mode,
    try_cast(s.f.osProfile.windowsConfiguration.patchSettings.enableHotpatching AS BOOLEAN) AS hotpatching_enabled,
    try_cast(s.f.osProfile.windowsConfiguration.enableAutomaticUpdates AS BOOLEAN) AS automatic_updates_enabled,
    try_cast(coalesce(
        s.f.osProfile.windowsConfiguration.patchSettings.automaticByPlatformSettings.bypassPlatformSafetyChecksOnUserSchedule,
        s.f.osProfile.linuxConfiguration.patchSettings.automaticByPlatformSettings.bypassPlatformSafetyChecksOnUserSchedule
    ) AS BOOLEAN) AS bypass_platform_safety_checks,
    split_part(list_filter(
        s.f.instanceView.patchStatus.configurationStatuses, lambda x: x.code LIKE 'PatchModeConfigurationState/%'  -- noqa: RF01
    )[1].code, '/', 2) AS patch_mode_state,
    t.environment,
    t.criticality
FROM parsed AS s
LEFT JOIN tag_values AS t USING (vm_id, source_file)
ORDER BY s.vm_id, s.captured_at NULLS FIRST, s.source_file
