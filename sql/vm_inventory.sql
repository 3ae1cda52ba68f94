-- @unique vm_id as vm_inventory_vm_id_unique: One row per machine: every join on vm_id downstream relies on it.
-- @table One row per machine as of the evaluation date: configuration (OS, image, size, power state, patch settings), the tags PatchLedger reads (keys compared case-insensitively), the asset category (tag, else the first matching rule of registers/asset_categories.csv, else uncategorized), the update server from Log Analytics, and assessment coverage. Configuration and tags come from the machine's latest inventory snapshot captured up to the end of the evaluation date (the first capture when the estate has none that early). A machine with no successful assessment within stale_after_days of the evaluation date is unknown_stale.
-- @column vm_id: Canonical machine id: lower-case ARM id, or nonazure/<computer>.
-- @column name: Resource name (computer name for non-Azure machines).
-- @column subscription_id: Subscription GUID.
-- @column resource_group: Resource group (lower-case).
-- @column location: Azure region, lower-case without spaces (westus).
-- @column machine_kind: azure_vm, arc or non_azure.
-- @column in_inventory: True when the machine is in the inventory snapshot that describes the evaluation date.
-- @column computer_name: Guest computer name.
-- @column vm_uuid: The VM's vmId (GUID).
-- @column os_type: Windows or Linux.
-- @column os_name: OS name (instance view, else Log Analytics).
-- @column os_version: OS version string as reported.
-- @column os_build: Dotted build number parsed from os_version (10.0.20348.2322).
-- @column image_publisher: Marketplace image publisher.
-- @column image_offer: Marketplace image offer.
-- @column image_sku: Marketplace image SKU.
-- @column image_version: Exact image version, else the requested one.
-- @column vm_size: VM size (Standard_DS3_v2).
-- @column power_state: running, stopped, deallocated, ... (instance view or az --show-details).
-- @column provisioning_state: ARM provisioning state.
-- @column time_created: When the VM was created.
-- @column patch_mode: Manual, AutomaticByOS, AutomaticByPlatform or ImageDefault.
-- @column assessment_mode: ImageDefault or AutomaticByPlatform.
-- @column hotpatching_enabled: enableHotpatching (Windows).
-- @column automatic_updates_enabled: enableAutomaticUpdates (Windows).
-- @column bypass_platform_safety_checks: bypassPlatformSafetyChecksOnUserSchedule (AutomaticByPlatform on a customer-managed schedule).
-- @column role: Tag role.
-- @column owner: Tag owner.
-- @column criticality: Tag criticality, lower-case (critical, high, medium, low).
-- @column environment: Tag environment, lower-case (production, staging, test, dev).
-- @column asset_category: Tag asset-category, else the first matching rule, else uncategorized.
-- @column asset_category_source: tag, rule or default.
-- @column maintenance_window: Tag maintenance-window (a window_id).
-- @column internet_exposed: Tag internet-exposed = true.
-- @column pci_scope: Tag pci-scope = true.
-- @column wsus_server: Update server the Log Analytics agent last reported (UpdateSummary.WSUSServer).
-- @column windows_update_setting: UpdateSummary.WindowsUpdateSetting last reported.
-- @column last_assessed_at: Last successful assessment up to the end of the evaluation date, any source.
-- @column last_assessment_source: Source of that assessment.
-- @column reboot_pending: Reboot pending according to the last assessment that reports it.
-- @column assessment_age_days: Days between last_assessed_at and the evaluation date; NULL when never assessed.
-- @column coverage_status: assessed, or unknown_stale when never assessed or assessed more than stale_after_days before the evaluation date.
-- @column as_of: Evaluation date.
WITH
params AS (
    SELECT
        CAST($as_of AS DATE) AS as_of,
        timezone('UTC', (CAST($as_of AS DATE) + 1)::TIMESTAMP) AS cutoff,
        CAST($stale_after_days AS INTEGER) AS stale_after_days
),
-- Each machine's latest snapshot up to the end of the evaluation date (a dated one before the
-- undated azure/virtual_machines.json): nothing captured later describes the machine on that date.
-- Only when the estate holds no snapshot at all up to that date (its history starts later, e.g. a
-- first live capture made after the newest observation's day) does the first capture stand in.
-- The snapshot is chosen on its key columns alone, then read whole (ordering whole rows, the
-- resource JSON with them, cost seconds at 10,000 machines).
usable AS (
    SELECT s.rowid AS snapshot_row, s.vm_id, s.captured_at, s.source_file,
           s.captured_at IS NOT NULL AND s.captured_at >= params.cutoff AS later
    FROM staging.vm_snapshots AS s, params
    WHERE s.captured_at IS NULL OR s.captured_at < params.cutoff
       OR NOT EXISTS (SELECT 1 FROM staging.vm_snapshots WHERE captured_at IS NULL OR captured_at < params.cutoff)
),
chosen AS (
    SELECT snapshot_row
    FROM usable
    QUALIFY row_number() OVER (
        PARTITION BY vm_id ORDER BY later, CASE WHEN later THEN captured_at END, captured_at DESC NULLS LAST, source_file
    ) = 1
),
config AS (
    SELECT * FROM staging.vm_snapshots WHERE rowid IN (SELECT snapshot_row FROM chosen)
),
-- The tags object taken out of each resource once: each key is then read from it, not from the
-- whole resource. Materialized, else the type test below runs the extraction a second time over
-- every document (most of this table's cost at 10,000 machines).
tag_objects AS MATERIALIZED (
    SELECT vm_id, r->'tags' AS t FROM config
),
-- Read twice below (the tag values and the category rules): unnested once.
tags AS MATERIALIZED (
    SELECT vm_id, lower(trim(k)) AS tag_key, trim(t->>k) AS tag_value
    FROM (
        SELECT vm_id, t, unnest(json_keys(t)) AS k
        FROM tag_objects
        WHERE json_type(t) = 'OBJECT'
    )
),
tag_values AS (
    SELECT
        vm_id,
        max(tag_value) FILTER (WHERE tag_key = 'role') AS role,
        max(tag_value) FILTER (WHERE tag_key = 'owner') AS owner,
        lower(max(tag_value) FILTER (WHERE tag_key = 'criticality')) AS criticality,
        lower(max(tag_value) FILTER (WHERE tag_key = 'environment')) AS environment,
        max(tag_value) FILTER (WHERE tag_key = 'asset-category') AS asset_category,
        max(tag_value) FILTER (WHERE tag_key = 'maintenance-window') AS maintenance_window,
        lower(max(tag_value) FILTER (WHERE tag_key = 'internet-exposed')) = 'true' AS internet_exposed,
        lower(max(tag_value) FILTER (WHERE tag_key = 'pci-scope')) = 'true' AS pci_scope
    FROM tags
    GROUP BY vm_id
),
-- Latest OS facts Log Analytics reports, for machines outside the inventory.
-- Each fact's latest value per identity as received first (the join key is then built once per
-- identity, not per row), then per machine; arg_max skips NULL values, so each keeps its own time.
la_os_identities AS (
    SELECT
        _ResourceId, ResourceId, VMUUID, SourceComputerId, Computer,
        arg_max(OSType, TimeGenerated) AS os_type,
        max(TimeGenerated) FILTER (WHERE OSType IS NOT NULL) AS os_type_at,
        arg_max(coalesce(nullif(OSFullName, ''), OSName), TimeGenerated) AS os_name,
        max(TimeGenerated) FILTER (WHERE coalesce(nullif(OSFullName, ''), OSName) IS NOT NULL) AS os_name_at,
        arg_max(OSVersion, TimeGenerated) AS os_version,
        max(TimeGenerated) FILTER (WHERE OSVersion IS NOT NULL) AS os_version_at
    FROM raw.la_update, params
    WHERE TimeGenerated < params.cutoff
    GROUP BY ALL
),
la_os AS (
    SELECT
        m.vm_id,
        arg_max(u.os_type, u.os_type_at) AS os_type,
        arg_max(u.os_name, u.os_name_at) AS os_name,
        arg_max(u.os_version, u.os_version_at) AS os_version
    FROM la_os_identities AS u
    JOIN staging.vm_la_machines AS m
      ON m.la_key = lower(coalesce(nullif(u._ResourceId, ''), nullif(u.ResourceId, ''), ''))
            || '|' || lower(coalesce(u.VMUUID, '')) || '|' || lower(coalesce(u.SourceComputerId, ''))
            || '|' || lower(coalesce(u.Computer, ''))
    GROUP BY m.vm_id
),
la_summary AS (
    SELECT
        m.vm_id,
        arg_max(s.WSUSServer, s.TimeGenerated) AS wsus_server,
        arg_max(s.WindowsUpdateSetting, s.TimeGenerated) AS windows_update_setting,
        arg_max(s.OsVersion, s.TimeGenerated) AS os_version
    FROM raw.la_update_summary AS s
    JOIN staging.vm_la_machines AS m
      ON m.la_key = lower(coalesce(nullif(s._ResourceId, ''), nullif(s.ResourceId, ''), ''))
            || '|' || lower(coalesce(s.VMUUID, '')) || '|' || lower(coalesce(s.SourceComputerId, ''))
            || '|' || lower(coalesce(s.Computer, ''))
    , params
    WHERE s.TimeGenerated < params.cutoff
    GROUP BY m.vm_id
),
coverage AS (
    SELECT
        vm_id,
        max(assessed_at) FILTER (WHERE succeeded) AS last_assessed_at,
        -- Ties at the same time are broken by the value, so reruns give the same row.
        arg_max(source, (assessed_at, source)) FILTER (WHERE succeeded) AS last_assessment_source,
        arg_max(reboot_pending, (assessed_at, reboot_pending)) FILTER (WHERE reboot_pending IS NOT NULL) AS reboot_pending,
        arg_max(os_type, (assessed_at, os_type)) FILTER (WHERE os_type IS NOT NULL) AS os_type
    FROM staging.assessment_runs, params
    WHERE assessed_at < params.cutoff
    GROUP BY vm_id
),
-- Read twice (the category rules and the result): computed once.
base AS MATERIALIZED (
    SELECT
        i.vm_id,
        coalesce(c.name, i.name) AS name,
        i.subscription_id,
        i.resource_group,
        c.location,
        i.machine_kind,
        c.vm_id IS NOT NULL AS in_inventory,
        c.bypass_platform_safety_checks,
        coalesce(c.computer_name, i.computer_names[1]) AS computer_name,
        c.vm_uuid,
        coalesce(c.os_type, cov.os_type, lo.os_type) AS os_type,
        coalesce(c.os_name, lo.os_name) AS os_name,
        coalesce(c.os_version, ls.os_version, lo.os_version) AS os_version,
        c.image_publisher,
        c.image_offer,
        c.image_sku,
        c.image_version,
        c.vm_size,
        c.power_state,
        c.provisioning_state,
        c.time_created,
        c.patch_mode,
        c.assessment_mode,
        c.hotpatching_enabled,
        c.automatic_updates_enabled,
        t.role,
        t.owner,
        t.criticality,
        t.environment,
        t.asset_category AS asset_category_tag,
        t.maintenance_window,
        coalesce(t.internet_exposed, false) AS internet_exposed,
        coalesce(t.pci_scope, false) AS pci_scope,
        ls.wsus_server,
        ls.windows_update_setting,
        cov.last_assessed_at,
        cov.last_assessment_source,
        cov.reboot_pending
    FROM staging.vm_identity AS i
    LEFT JOIN config AS c USING (vm_id)
    LEFT JOIN tag_values AS t USING (vm_id)
    LEFT JOIN la_os AS lo USING (vm_id)
    LEFT JOIN la_summary AS ls USING (vm_id)
    LEFT JOIN coverage AS cov USING (vm_id)
),
-- Without an asset-category tag, the first rule (by rule_order) whose tag matches and whose
-- os_type is empty or equal wins.
rule_match AS (
    SELECT b.vm_id, arg_min(a.category_id, (a.rule_order, a.category_id)) AS category_id
    FROM base AS b
    JOIN tags AS t ON t.vm_id = b.vm_id
    JOIN staging.asset_categories AS a
      ON lower(trim(a.tag_key)) = t.tag_key
     AND lower(trim(a.tag_value)) = lower(t.tag_value)
     AND (nullif(trim(a.os_type), '') IS NULL OR lower(a.os_type) = lower(b.os_type))
    WHERE b.asset_category_tag IS NULL
    GROUP BY b.vm_id
)
SELECT
    b.vm_id,
    b.name,
    b.subscription_id,
    b.resource_group,
    b.location,
    b.machine_kind,
    b.in_inventory,
    b.computer_name,
    b.vm_uuid,
    b.os_type,
    b.os_name,
    b.os_version,
    nullif(regexp_extract(b.os_version, '(\d+\.\d+\.\d+(\.\d+)?)', 1), '') AS os_build,
    b.image_publisher,
    b.image_offer,
    b.image_sku,
    b.image_version,
    b.vm_size,
    b.power_state,
    b.provisioning_state,
    b.time_created,
    b.patch_mode,
    b.assessment_mode,
    b.hotpatching_enabled,
    b.automatic_updates_enabled,
    b.bypass_platform_safety_checks,
    b.role,
    b.owner,
    b.criticality,
    b.environment,
    coalesce(b.asset_category_tag, r.category_id, 'uncategorized') AS asset_category,
    CASE WHEN b.asset_category_tag IS NOT NULL THEN 'tag' WHEN r.category_id IS NOT NULL THEN 'rule' ELSE 'default' END
        AS asset_category_source,
    b.maintenance_window,
    b.internet_exposed,
    b.pci_scope,
    b.wsus_server,
    b.windows_update_setting,
    b.last_assessed_at,
    b.last_assessment_source,
    b.reboot_pending,
    date_diff('day', b.last_assessed_at::DATE, params.as_of) AS assessment_age_days,
    CASE
        WHEN b.last_assessed_at IS NULL THEN 'unknown_stale'
        WHEN date_diff('day', b.last_assessed_at::DATE, params.as_of) > params.stale_after_days THEN 'unknown_stale'
        ELSE 'assessed'
    END AS coverage_status,
    params.as_of
FROM base AS b
CROSS JOIN params
LEFT JOIN rule_match AS r USING (vm_id)
ORDER BY b.vm_id
