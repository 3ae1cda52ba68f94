-- @summary Findings of the control: production machines that could update themselves (with the
-- @summary period and the installs), those that cannot be judged, each install, invalid exceptions.
-- @group stage6_patch_monitoring
-- @depends marts.auto_update_installs, marts.auto_update_periods, marts.vm_inventory
-- @depends staging.auto_update_exceptions
-- @table Findings of the automatic-updates control as of $as_of (docs/estate.md, "Automatic updates in production"), one row per finding with criteria, condition, cause, effect and recommendation; carried into marts.audit_findings. Rules:
--   automatic_updates_in_production  high    a production machine could install updates on its own (marts.auto_update_periods status violation), with how long in the period and the installs it let through
--   automatic_updates_unverified     medium  a production machine whose setting cannot be judged from Azure (Linux image default, patch mode not applied in the guest, or no setting known)
--   install_by_automatic_updates     high    a patch installed on a production machine while it updated itself: outside testing and approval
--   automatic_update_exception_invalid medium a policy exception covering a production machine that breaks a rule (not approved, self-approved, expired or revoked, or not yet approved)
-- @column finding_id: Stable id: sha256 of rule, '|' and subject.
-- @column rule: The rule (list in the table header).
-- @column severity: high or medium.
-- @column subject: vm/<vm_id>, vm/<vm_id>/patch/<patch_key>, or auto_update_exception/<exception_id>.
-- @column patch_key: The patch (install_by_automatic_updates).
-- @column asset_category: The machine's asset category.
-- @column environment: The machine's environment tag.
-- @column vm_id: The machine.
-- @column criteria: The requirement, with its source.
-- @column condition: What was found, with the period, its length and the installs.
-- @column evidence: JSON with the periods, settings, installs and ids the condition rests on.
-- @column cause: Why it happened (from the settings found).
-- @column effect: The risk.
-- @column recommendation: What to do.
WITH
params AS (
    SELECT CAST($as_of AS DATE) AS as_of
),
criteria(text) AS (
    VALUES ('Patch process: no automatic updates on production servers (Windows or Linux); patches reach production only after testing and approval (SOX ITGC change management; NIST SP 800-53 CM-3, CM-5)')
),
periods AS (
    SELECT p.*, i.asset_category FROM marts.auto_update_periods AS p JOIN marts.vm_inventory AS i USING (vm_id)
),
installs AS (
    SELECT vm_id, status, count(*) AS n, list(patch_key ORDER BY installed_at, patch_key) AS patch_keys
    FROM marts.auto_update_installs
    GROUP BY ALL
),
machine AS (
    SELECT
        p.vm_id,
        any_value(p.name) AS name,
        any_value(p.os_type) AS os_type,
        arg_max(p.environment, p.valid_to) AS environment,
        any_value(p.asset_category) AS asset_category,
        p.status,
        min(p.valid_from) AS first_from,
        max(p.valid_to) AS last_to,
        sum(p.days) AS days,
        bool_or(p.valid_from IS NULL) AS start_unknown,
        list(DISTINCT p.setting ORDER BY p.setting) AS settings,
        list(DISTINCT p.patch_mode ORDER BY p.patch_mode) FILTER (WHERE p.patch_mode IS NOT NULL) AS patch_modes,
        list(json_object('valid_from', p.valid_from, 'valid_to', p.valid_to, 'setting', p.setting,
                         'patch_mode', p.patch_mode, 'automatic_updates_enabled', p.automatic_updates_enabled,
                         'bypass_platform_safety_checks', p.bypass_platform_safety_checks,
                         'windows_update_setting', p.windows_update_setting,
                         'maintenance_configuration_id', p.maintenance_configuration_id)
             ORDER BY p.valid_from NULLS FIRST) AS periods
    FROM periods AS p
    WHERE p.status IN ('violation', 'unverified')
    GROUP BY p.vm_id, p.status
),
setting_cause(setting, cause) AS (
    VALUES
        ('automatic_by_os', 'Windows Automatic Updates is on (patchMode AutomaticByOS or enableAutomaticUpdates true): Windows Update installs updates by itself.'),
        ('windows_update_scheduled', 'The Windows Update agent reports "Scheduled installation" (a group policy or local setting schedules automatic installation).'),
        ('platform_autopatch', 'patchMode AutomaticByPlatform without a customer-managed schedule (bypassPlatformSafetyChecksOnUserSchedule not true): Azure automatic VM guest patching installs Critical and Security updates by itself.'),
        ('image_default', 'Linux patchMode ImageDefault: the image''s own configuration applies (e.g. unattended-upgrades on Ubuntu), which Azure does not report.'),
        ('mode_not_applied', 'The instance view reports the patch mode configuration as not Ready (Pending or Failed): the guest may still run its previous, self-updating setting.'),
        ('unknown', 'No patch setting is known for the machine (no inventory setting, no Windows Update setting reported).')
),
findings AS (
    SELECT
        CASE m.status WHEN 'violation' THEN 'automatic_updates_in_production' ELSE 'automatic_updates_unverified' END AS rule,
        CASE m.status WHEN 'violation' THEN 'high' ELSE 'medium' END AS severity,
        'vm/' || m.vm_id AS subject,
        NULL::VARCHAR AS patch_key,
        m.asset_category,
        m.environment,
        m.vm_id,
        format('{} ({}, {}) {} from {} to {}{} ({}); {} install(s) in that time{}',
               m.name, coalesce(m.environment, 'production scope'), coalesce(m.os_type, 'OS unknown'),
               CASE m.status WHEN 'violation' THEN 'could install updates on its own' ELSE 'may install updates on its own (cannot be confirmed)' END,
               CASE WHEN m.first_from IS NULL THEN 'an unknown date' ELSE strftime(m.first_from, '%Y-%m-%d %H:%M') END,
               strftime(m.last_to, '%Y-%m-%d %H:%M'),
               CASE WHEN m.start_unknown THEN '' ELSE format(', {} days', round(m.days, 1)) END,
               array_to_string(m.settings, ', '),
               coalesce(i.n, 0),
               CASE WHEN i.n > 0 THEN ': ' || array_to_string(i.patch_keys[1:10], ', ') || CASE WHEN i.n > 10 THEN ', ...' ELSE '' END ELSE '' END)
            AS condition,
        json_object('as_of', params.as_of, 'days', m.days, 'first_from', m.first_from, 'last_to', m.last_to,
                    'periods', m.periods, 'installs', coalesce(i.n, 0), 'patch_keys', coalesce(i.patch_keys, []))::VARCHAR AS evidence,
        (SELECT string_agg(c.cause, ' ' ORDER BY c.setting) FROM setting_cause AS c WHERE list_contains(m.settings, c.setting)) AS cause,
        CASE m.status WHEN 'violation'
            THEN 'Updates reach a production machine without testing, approval or a change window: untested changes, unplanned reboots, and installs missing from the change population.'
            ELSE 'Whether the machine updates itself is unknown: untested changes may reach production unnoticed.' END AS effect,
        CASE m.status WHEN 'violation'
            THEN 'Set patchMode Manual (Windows: enableAutomaticUpdates false) or AutomaticByPlatform with bypassPlatformSafetyChecksOnUserSchedule true and a maintenance configuration assignment; review the installs listed; or record an approved, expiring exception.'
            ELSE 'Confirm in the guest that automatic updates are off (Linux: unattended-upgrades / dnf-automatic disabled), or move the machine to a customer-managed schedule; record the result.' END AS recommendation
    FROM machine AS m
    LEFT JOIN installs AS i ON i.vm_id = m.vm_id AND i.status = m.status
    CROSS JOIN params

    UNION ALL
    SELECT
        'install_by_automatic_updates', 'high',
        'vm/' || a.vm_id || '/patch/' || a.patch_key,
        a.patch_key, p.asset_category, p.environment, a.vm_id,
        format('patch {} was installed on {} by {} while the machine updated itself ({}){}',
               a.patch_key, a.vm_id, strftime(a.installed_at, '%Y-%m-%dT%H:%M:%SZ'), a.setting,
               CASE WHEN len(coalesce(a.install_findings, [])) > 0 THEN '; also ' || array_to_string(a.install_findings, ', ') ELSE '' END),
        json_object('installed_at', a.installed_at, 'source', a.source, 'run_id', a.run_id, 'setting', a.setting,
                    'period_from', a.period_from, 'install_findings', coalesce(a.install_findings, []))::VARCHAR,
        (SELECT c.cause FROM setting_cause AS c WHERE c.setting = a.setting),
        'A change reached production without testing and approval.',
        'Review the install retrospectively (test, authorize or roll back) and turn the machine''s automatic updates off.'
    FROM marts.auto_update_installs AS a
    JOIN periods AS p ON p.vm_id = a.vm_id AND p.valid_from IS NOT DISTINCT FROM a.period_from
    WHERE a.status = 'violation'

    UNION ALL
    SELECT
        'automatic_update_exception_invalid', 'medium',
        'auto_update_exception/' || e.exception_id,
        NULL, NULL, NULL, any_value(p.vm_id) FILTER (WHERE e.vm_id IS NOT NULL),
        format('exception {} covers {} production machine(s) with automatic updates but is not valid: {}', e.exception_id,
               count(DISTINCT p.vm_id),
               CASE WHEN e.status <> 'active' THEN 'status ' || e.status
                    WHEN nullif(trim(e.approver), '') IS NULL THEN 'no approver'
                    WHEN e.approver = coalesce(e.requested_by, '') THEN 'approved by its requester ' || e.approver
                    WHEN e.expires_at IS NULL THEN 'no expiry'
                    WHEN e.approved_at IS NULL THEN 'no approval date'
                    ELSE 'not in force during the period (approved ' || strftime(e.approved_at, '%Y-%m-%d') || ', expires ' || strftime(e.expires_at, '%Y-%m-%d') || ')' END),
        json_object('exception_id', e.exception_id, 'vm_ids', list(DISTINCT p.vm_id ORDER BY p.vm_id), 'approver', e.approver,
                    'requested_by', e.requested_by, 'approved_at', e.approved_at, 'expires_at', e.expires_at, 'status', e.status)::VARCHAR,
        'The exception was recorded without the approval and expiry the exceptions process requires.',
        'Automatic updates in production are not covered by a valid risk acceptance.',
        'Have an independent approver approve it with an expiry, or revoke it and turn automatic updates off.'
    FROM staging.auto_update_exceptions AS e
    JOIN periods AS p ON p.exception_id = e.exception_id AND p.production AND NOT p.exception_valid
    WHERE p.status IN ('violation', 'unverified')
    GROUP BY e.exception_id, e.vm_id, e.status, e.approver, e.requested_by, e.approved_at, e.expires_at
)
SELECT sha256(rule || '|' || subject) AS finding_id, rule, severity, subject, patch_key, asset_category,
       environment, vm_id, (SELECT text FROM criteria) AS criteria, condition, evidence, cause, effect, recommendation
FROM findings
ORDER BY rule, subject
