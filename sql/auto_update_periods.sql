-- @summary Whether each machine could install updates on its own, as periods: the settings in force
-- @summary judged per OS, production or not, and the exception covering it.
-- @group stage6_patch_monitoring
-- @depends marts.vm_config_history, marts.vm_inventory, staging.auto_update_exceptions
-- @depends staging.auto_update_policy, staging.maintenance_assignments
-- @depends staging.maintenance_configurations, staging.patch_observations
-- @table Whether each machine could install updates on its own, as validity periods up to $as_of: the patch settings in force (marts.vm_config_history: patch mode, enableAutomaticUpdates, bypassPlatformSafetyChecksOnUserSchedule, environment tag, Log Analytics WindowsUpdateSetting) with the maintenance-configuration assignment of the latest capture, judged per OS (docs/estate.md, "Automatic updates in production"). A new period starts whenever one of those settings changes.
-- @column vm_id: Canonical machine id.
-- @column name: Machine name.
-- @column os_type: Windows or Linux (NULL when unknown).
-- @column valid_from: Start of the period: the first snapshot or record showing these settings (they may be older); NULL when only the undated inventory is known.
-- @column valid_to: End of the period: the next change, else the end of the evaluation date.
-- @column days: Length of the period in days (NULL when valid_from is unknown).
-- @column environment: Environment tag in force.
-- @column production: True when the environment is one of the policy's production_environments or the machine is in one of its production_scopes.
-- @column patch_mode: patchSettings.patchMode in force.
-- @column automatic_updates_enabled: enableAutomaticUpdates in force (Windows).
-- @column bypass_platform_safety_checks: bypassPlatformSafetyChecksOnUserSchedule in force.
-- @column patch_mode_state: Instance view PatchModeConfigurationState in force (Ready, Pending, Failed).
-- @column windows_update_setting: Log Analytics UpdateSummary.WindowsUpdateSetting in force.
-- @column maintenance_configuration_id: The InGuestPatch maintenance configuration the machine is assigned to (latest capture), NULL if none.
-- @column setting: The judgement: automatic_by_os, windows_update_scheduled, platform_autopatch (self-updating); image_default (Linux: the image's own unattended upgrades may apply, not visible to Azure); mode_not_applied (the instance view reports the patch mode configuration Pending or Failed, so a non-updating mode is not in force yet); unknown (nothing to judge); platform_customer_schedule, platform_schedule_missing, manual (not self-updating).
-- @column self_updating: True when the machine installs updates on its own, false when not, NULL when it cannot be judged (image_default, unknown).
-- @column exception_id: The policy exception covering the period, if any (valid or not).
-- @column exception_valid: True when that exception is active, approved by someone other than its requester, approved before and expiring after the period's start.
-- @column status: violation (production, self-updating, no valid exception), unverified (production, cannot be judged, no valid exception), excepted (production, covered by a valid exception), compliant (production, not self-updating), allowed_non_production (not production).
-- @column as_of: Evaluation date.
WITH
params AS (
    SELECT CAST($as_of AS DATE) AS as_of, timezone('UTC', (CAST($as_of AS DATE) + 1)::TIMESTAMP) AS cutoff
),
policy AS (
    SELECT * FROM staging.auto_update_policy
),
history AS (
    SELECT * FROM marts.vm_config_history
    WHERE attribute IN ('patch_mode', 'automatic_updates_enabled', 'bypass_platform_safety_checks',
                        'patch_mode_state', 'environment', 'windows_update_setting')
),
-- Period starts: every change of a judged setting (NULL: known only from the undated inventory),
-- and an exception's approval and expiry, so that each period has one exception state. A machine
-- with no setting at all still gets one period (judged unknown).
exceptions AS (
    SELECT e.*, i.vm_id AS covered_vm
    FROM staging.auto_update_exceptions AS e
    JOIN marts.vm_inventory AS i ON i.vm_id = e.vm_id OR starts_with(i.vm_id, e.scope)
),
-- A machine in the inventory is judged from its first snapshot on: before it, its environment
-- and patch mode are unknown.
first_snapshot AS (
    SELECT vm_id, min(valid_from) AS first_at FROM history WHERE source = 'inventory' GROUP BY vm_id
),
starts AS (
    SELECT DISTINCT h.vm_id, h.valid_from AS period_start
    FROM history AS h LEFT JOIN first_snapshot AS f USING (vm_id)
    WHERE f.first_at IS NULL OR h.valid_from >= f.first_at
    UNION
    SELECT vm_id, NULL FROM marts.vm_inventory WHERE vm_id NOT IN (SELECT vm_id FROM history)
    UNION
    SELECT covered_vm, t FROM exceptions, params,
    LATERAL (SELECT unnest([approved_at, expires_at]) AS t)
    WHERE t < params.cutoff
      AND t > coalesce((SELECT first_at FROM first_snapshot WHERE vm_id = covered_vm),
                       (SELECT min(valid_from) FROM history WHERE vm_id = covered_vm))
),
periods AS (
    SELECT
        vm_id,
        period_start,
        coalesce(lead(period_start) OVER (PARTITION BY vm_id ORDER BY period_start NULLS FIRST), params.cutoff) AS period_end
    FROM starts, params
),
-- The value of each setting in force at a period's start.
settings AS (
    SELECT
        p.vm_id,
        p.period_start,
        p.period_end,
        max(h.value) FILTER (WHERE h.attribute = 'patch_mode') AS patch_mode,
        max(h.value) FILTER (WHERE h.attribute = 'automatic_updates_enabled')::BOOLEAN AS automatic_updates_enabled,
        max(h.value) FILTER (WHERE h.attribute = 'bypass_platform_safety_checks')::BOOLEAN AS bypass_platform_safety_checks,
        max(h.value) FILTER (WHERE h.attribute = 'patch_mode_state') AS patch_mode_state,
        max(h.value) FILTER (WHERE h.attribute = 'environment') AS environment,
        max(h.value) FILTER (WHERE h.attribute = 'windows_update_setting') AS windows_update_setting
    FROM periods AS p
    LEFT JOIN history AS h
      ON h.vm_id = p.vm_id
     AND (h.valid_from IS NULL OR h.valid_from <= p.period_start)
     AND (h.valid_to IS NULL OR p.period_start IS NULL OR h.valid_to > p.period_start)
    GROUP BY ALL
),
-- Assignments of the latest maintenance capture up to the evaluation date (undated files when
-- there is no dated one), to an InGuestPatch configuration.
assigned AS (
    SELECT a.vm_id, min(a.configuration_id) AS configuration_id
    FROM latest_capture('staging.maintenance_assignments', $as_of) AS a
    JOIN staging.maintenance_configurations AS c
      ON c.configuration_id = a.configuration_id AND c.captured_at IS NOT DISTINCT FROM a.captured_at
     AND lower(c.maintenance_scope) = 'inguestpatch'
    WHERE a.vm_id IS NOT NULL
    GROUP BY a.vm_id
),
rules AS (
    SELECT
        s.*,
        i.name,
        i.os_type,
        a.configuration_id AS maintenance_configuration_id,
        coalesce(list_contains(policy.production_environments, lower(s.environment)), false)
            OR len(list_filter(policy.production_scopes, lambda x: starts_with(s.vm_id, x))) > 0 AS production,
        CASE
            -- patchMode AutomaticByPlatform (both OSes): Azure orchestrates the patching unless
            -- the machine is on a customer-managed schedule.
            WHEN s.patch_mode = 'AutomaticByPlatform' AND s.bypass_platform_safety_checks AND a.configuration_id IS NOT NULL
                THEN 'platform_customer_schedule'
            WHEN s.patch_mode = 'AutomaticByPlatform' AND s.bypass_platform_safety_checks
                THEN 'platform_schedule_missing'
            WHEN s.patch_mode = 'AutomaticByPlatform' THEN 'platform_autopatch'
            WHEN i.os_type = 'Linux' AND (s.patch_mode = 'ImageDefault' OR (s.patch_mode IS NULL AND i.in_inventory))
                THEN 'image_default'
            -- Windows: AutomaticByOS turns Windows Automatic Updates on; enableAutomaticUpdates
            -- true does the same whatever the mode says; the agent's own setting (Log
            -- Analytics) shows a group policy that schedules installation.
            WHEN s.patch_mode = 'AutomaticByOS' THEN 'automatic_by_os'
            WHEN s.automatic_updates_enabled THEN 'automatic_by_os'
            WHEN s.windows_update_setting = 'Scheduled installation' THEN 'windows_update_scheduled'
            WHEN s.patch_mode = 'Manual'
                 AND coalesce(s.windows_update_setting, 'Manual') IN ('Manual', 'Notify before installation') THEN 'manual'
            WHEN s.patch_mode IS NULL AND s.windows_update_setting IN ('Manual', 'Notify before installation') THEN 'manual'
            -- A Windows VM with no patch mode gets AutomaticByOS, Azure's default.
            WHEN i.os_type = 'Windows' AND i.in_inventory AND s.patch_mode IS NULL AND s.automatic_updates_enabled IS NULL
                 AND s.windows_update_setting IS NULL THEN 'automatic_by_os'
            WHEN s.patch_mode IS NULL AND NOT s.automatic_updates_enabled AND s.windows_update_setting IS NULL THEN 'manual'
            ELSE 'unknown'
        END AS setting_by_model
    FROM settings AS s
    JOIN marts.vm_inventory AS i USING (vm_id)
    LEFT JOIN assigned AS a USING (vm_id)
    CROSS JOIN policy
),
-- The instance view says whether the guest applied the patch mode: a setting that would not
-- update the machine is not taken on trust while it is Pending or Failed.
judged AS (
    SELECT
        *,
        CASE WHEN setting_by_model IN ('platform_customer_schedule', 'platform_schedule_missing', 'manual')
                  AND patch_mode_state IS NOT NULL AND patch_mode_state <> 'Ready' THEN 'mode_not_applied'
             ELSE setting_by_model END AS setting
    FROM rules
),
-- An exception covers a period when it is in force at the period's start (the evaluation date's
-- end for an undated period): the rules of registers/exceptions.csv.
candidates AS (
    SELECT
        j.vm_id,
        j.period_start,
        e.exception_id,
        e.status = 'active' AND nullif(trim(e.approver), '') IS NOT NULL
            AND e.approver <> coalesce(e.requested_by, '')
            AND e.approved_at <= coalesce(j.period_start, params.cutoff)
            AND e.expires_at > coalesce(j.period_start, params.cutoff) AS valid
    FROM judged AS j
    JOIN exceptions AS e ON e.covered_vm = j.vm_id
    CROSS JOIN params
),
covered AS (
    SELECT vm_id, period_start, arg_max(exception_id, (coalesce(valid, false), exception_id)) AS exception_id,
           coalesce(max(valid), false) AS exception_valid
    FROM candidates
    GROUP BY vm_id, period_start
)
SELECT
    j.vm_id,
    j.name,
    j.os_type,
    j.period_start AS valid_from,
    j.period_end AS valid_to,
    round(epoch(j.period_end - j.period_start) / 86400.0, 2) AS days,
    j.environment,
    j.production,
    j.patch_mode,
    j.automatic_updates_enabled,
    j.bypass_platform_safety_checks,
    j.patch_mode_state,
    j.windows_update_setting,
    j.maintenance_configuration_id,
    j.setting,
    CASE WHEN j.setting IN ('automatic_by_os', 'windows_update_scheduled', 'platform_autopatch') THEN true
         WHEN j.setting IN ('platform_customer_schedule', 'platform_schedule_missing', 'manual') THEN false
    END AS self_updating,
    c.exception_id,
    c.exception_valid,
    CASE
        WHEN NOT j.production THEN 'allowed_non_production'
        WHEN j.setting IN ('platform_customer_schedule', 'platform_schedule_missing', 'manual') THEN 'compliant'
        WHEN coalesce(c.exception_valid, false) THEN 'excepted'
        WHEN j.setting IN ('image_default', 'unknown', 'mode_not_applied') THEN 'unverified'
        ELSE 'violation'
    END AS status,
    params.as_of
FROM judged AS j
LEFT JOIN covered AS c ON c.vm_id = j.vm_id AND c.period_start IS NOT DISTINCT FROM j.period_start
CROSS JOIN params
ORDER BY j.vm_id, j.period_start NULLS FIRST
