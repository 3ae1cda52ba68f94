-- @table Findings on maintenance schedules as of $as_of (marts.vm_maintenance_windows), one row per finding with criteria, condition, cause, effect and recommendation; carried into marts.audit_findings. Rules:
--   machine_unscheduled        medium  an Azure machine on no InGuestPatch maintenance configuration whose maintenance-window tag names no registered window (marts.unscheduled_machines): nothing plans its patching
--   maintenance_tag_disagrees  low     a machine on an InGuestPatch configuration whose maintenance-window tag names another window: Azure Update Manager patches it in the configuration's occurrences, not in the window the tag states
-- @column finding_id: Stable id: sha256 of rule, '|' and subject.
-- @column rule: The rule (list in the table header).
-- @column severity: medium or low.
-- @column subject: vm/<vm_id>.
-- @column patch_key: NULL (the rules are about machines).
-- @column asset_category: The machine's asset category.
-- @column environment: The machine's environment tag.
-- @column vm_id: The machine.
-- @column criteria: The requirement, with its source.
-- @column condition: What was found: the machine, its tag and its configuration.
-- @column evidence: JSON with the tag, the configuration and the evaluation date.
-- @column cause: Why it usually happens.
-- @column effect: The risk.
-- @column recommendation: What to do.
WITH
params AS (
    SELECT CAST($as_of AS DATE) AS as_of
),
machines AS (
    SELECT w.*, i.asset_category FROM marts.vm_maintenance_windows AS w JOIN marts.vm_inventory AS i USING (vm_id)
    WHERE w.in_inventory
),
findings AS (
    SELECT 'machine_unscheduled' AS rule, 'medium' AS severity, m.vm_id, m.asset_category, m.environment,
           format('{} ({}) is on no InGuestPatch maintenance configuration and {} as of {}', m.name,
                  coalesce(m.environment, 'no environment tag'),
                  CASE WHEN m.tag_window IS NULL THEN 'has no maintenance-window tag'
                       ELSE 'its maintenance-window tag ' || m.tag_window || ' names no registered window' END,
                  strftime(p.as_of, '%Y-%m-%d')) AS condition,
           json_object('tag_window', m.tag_window, 'as_of', p.as_of)::VARCHAR AS evidence
    FROM marts.unscheduled_machines AS u JOIN machines AS m USING (vm_id) CROSS JOIN params AS p
    UNION ALL
    SELECT 'maintenance_tag_disagrees', 'low', m.vm_id, m.asset_category, m.environment,
           format('{} is patched by maintenance configuration {} while its maintenance-window tag says {} (as of {})',
                  m.name, m.configuration_name, m.tag_window, strftime(p.as_of, '%Y-%m-%d')),
           json_object('tag_window', m.tag_window, 'configuration_id', m.configuration_id,
                       'configurations', m.configurations, 'as_of', p.as_of)::VARCHAR
    FROM machines AS m CROSS JOIN params AS p
    WHERE m.tag_disagrees
),
explained(rule, criteria, cause, effect, recommendation) AS (
    VALUES
        ('machine_unscheduled',
         'NIST SP 800-40r4 section 3.4: every asset belongs to a maintenance group with a maintenance schedule; Azure Update Manager patches on schedule only machines assigned to a maintenance configuration',
         'The machine was deployed outside the patching onboarding (no tag, no maintenance configuration assignment).',
         'Its patches are installed at no planned time, or never; its gaps cannot be scheduled.',
         'Assign the machine to an InGuestPatch maintenance configuration (or tag it with a registered window) for its environment.'),
        ('maintenance_tag_disagrees',
         'The maintenance schedule of record must be the one that runs: Azure Update Manager runs the maintenance configurations assigned to the machine',
         'The machine was reassigned in Azure (or its tag edited) without updating the other.',
         'Change, capacity and blackout planning by tag expects the machine in another window than the one Azure uses.',
         'Align the tag with the assigned maintenance configuration, or reassign the machine.')
)
SELECT sha256(f.rule || '|vm/' || f.vm_id) AS finding_id, f.rule, f.severity, 'vm/' || f.vm_id AS subject,
       NULL::VARCHAR AS patch_key, f.asset_category, f.environment, f.vm_id, x.criteria, f.condition, f.evidence,
       x.cause, x.effect, x.recommendation
FROM findings AS f JOIN explained AS x USING (rule)
ORDER BY f.rule, subject
