-- @summary The audit of installed versus authorized: the gaps aggregated per rule (unauthorized,
-- @summary rejected or untested production installs, overdue KEV and overdue per framework, stale
-- @summary assessments) with counts and population size, plus the change-control findings of stage 5,
-- @summary each with criteria, condition, cause, effect and recommendation and a stable finding id.
-- @group stage6_patch_monitoring
-- @depends marts.authorization_findings, marts.authorization_install_findings
-- @depends marts.auto_update_findings, marts.compliance_gaps, marts.maintenance_findings, marts.rollback_findings
-- @depends marts.vm_inventory, marts.vm_patch_state, staging.sla_policy
-- @depends marts.late_arrivals
-- @unique finding_id as finding_ids_unique: Each finding id names one finding: the evidence pack and follow-ups refer to it.
-- @table Scheduled audit of installed versus authorized as of $as_of (stage 6 of the seed): one row per finding, with the Yellow Book elements (criteria, condition with counts and population size, cause, effect, recommendation). Sources: marts.compliance_gaps aggregated per rule over the fleet (installed_unauthorized, installed_rejected, untested_in_production, kev_overdue, overdue_internal, overdue_pci_dss, overdue_fedramp, overdue_cisa_bod2604, stale_assessment), and the change-control findings of stage 5 (marts.authorization_findings, marts.authorization_install_findings) and of the automatic-updates control (marts.auto_update_findings) and the rollback-readiness control (marts.rollback_findings) and the maintenance schedules (marts.maintenance_findings) carried over with their own ids, and what arrived after the evaluation date for the days up to it (marts.late_arrivals: late_scan_file per file, register_row_recorded_late per register). A rule with nothing found gives no row.
-- @column finding_id: Stable id: sha256 of rule, '|' and subject (the same scheme as the stage-5 findings, whose ids are kept); the same finding keeps its id across runs.
-- @column rule: The rule that found it.
-- @column severity: high, medium or low.
-- @column subject: What the finding is about: fleet for the aggregated gap rules, else the stage-5 subject (authorization_event/<id>, exception/<id>, vm/<vm_id>/patch/<patch_key>, patch/<patch_key>).
-- @column criteria: The requirement, with its source.
-- @column condition: What was found, with counts and the population size.
-- @column evidence: JSON with the ids, counts and dates the condition rests on (gap_ids sorted for the aggregated rules).
-- @column cause: Why it usually happens (to be confirmed with management).
-- @column effect: The risk or consequence.
-- @column recommendation: What to do.
-- @column source_table: The table the finding comes from.
-- @column patch_key: The patch, when the finding is about one.
-- @column asset_category: The asset category, when there is one.
-- @column environment: The environment, when there is one.
-- @column vm_id: The machine, when the finding is about one.
-- @column affected: Items found (gaps or machines) for the aggregated rules; 1 for the others.
-- @column population: Size of the population the rule tested (aggregated rules); NULL for the others.
-- @column as_of: Evaluation date.
WITH
params AS (
    SELECT CAST($as_of AS DATE) AS as_of
),
gaps AS (
    SELECT * FROM marts.compliance_gaps
),
clocked AS (
    SELECT * FROM gaps
    WHERE gap_type IN ('authorized_missing', 'available_unauthorized', 'failed_reapply', 'pending_reboot')
),
production_installs AS (
    SELECT count(*) AS n
    FROM marts.vm_patch_state AS s
    JOIN marts.vm_inventory AS i USING (vm_id)
    WHERE i.environment = 'production' AND i.coverage_status <> 'unknown_stale'
      AND s.state IN ('installed', 'installed_pending_reboot')
),
framework_text AS (
    SELECT framework, any_value(title || ': ' || clause) AS criteria
    FROM staging.sla_policy
    GROUP BY framework
),
-- One row per aggregated rule: which gaps it found, out of which population.
aggregated AS (
    SELECT 'installed_unauthorized' AS rule, 'high' AS severity,
           'SOX ITGC change management / NIST SP 800-53 CM-3: changes reach production only after authorization' AS criteria,
           'production installations with no authorization for the machine''s scope' AS what,
           list(gap_id ORDER BY gap_id) FILTER (WHERE gap_type = 'installed_unauthorized') AS gap_ids,
           count(DISTINCT vm_id) FILTER (WHERE gap_type = 'installed_unauthorized') AS machines,
           (SELECT n FROM production_installs) AS population
    FROM gaps
    UNION ALL
    SELECT 'installed_rejected', 'high',
           'SOX ITGC change management / NIST SP 800-53 CM-3: a rejected change is not implemented',
           'production installations of a patch rejected for the machine''s scope',
           list(gap_id ORDER BY gap_id) FILTER (WHERE gap_type = 'installed_rejected'),
           count(DISTINCT vm_id) FILTER (WHERE gap_type = 'installed_rejected'),
           (SELECT n FROM production_installs)
    FROM gaps
    UNION ALL
    SELECT 'untested_in_production', 'medium',
           'SOX ITGC testing evidence / NIST SP 800-53 CM-3(2): changes are tested before production (a passing test in the machine''s asset category)',
           'production installations with no passing test in the machine''s asset category',
           list(gap_id ORDER BY gap_id) FILTER (WHERE gap_type = 'untested_in_production'),
           count(DISTINCT vm_id) FILTER (WHERE gap_type = 'untested_in_production'),
           (SELECT n FROM production_installs)
    FROM gaps
    UNION ALL
    SELECT 'kev_overdue', 'high',
           'CISA KEV catalog due dates (BOD 22-01; benchmark under BOD 26-04): known exploited vulnerabilities remediated by their due date',
           'open gaps of KEV-listed patches past their KEV due date',
           list(gap_id ORDER BY gap_id) FILTER (WHERE sla_kev_due < params.as_of),
           count(DISTINCT vm_id) FILTER (WHERE sla_kev_due < params.as_of),
           count(*) FILTER (WHERE sla_kev_due IS NOT NULL)
    FROM clocked, params
    UNION ALL
    SELECT 'overdue_internal', 'medium', coalesce((SELECT criteria FROM framework_text WHERE framework = 'internal'), 'Internal patch policy'),
           'open gaps past their internal-policy due date',
           list(gap_id ORDER BY gap_id) FILTER (WHERE sla_internal_due < params.as_of),
           count(DISTINCT vm_id) FILTER (WHERE sla_internal_due < params.as_of),
           count(*) FILTER (WHERE sla_internal_due IS NOT NULL)
    FROM clocked, params
    UNION ALL
    SELECT 'overdue_pci_dss', 'high', coalesce((SELECT criteria FROM framework_text WHERE framework = 'pci_dss'), 'PCI DSS 6.3.3'),
           'open gaps on pci-scope machines past their PCI DSS 6.3.3 due date',
           list(gap_id ORDER BY gap_id) FILTER (WHERE sla_pci_due < params.as_of),
           count(DISTINCT vm_id) FILTER (WHERE sla_pci_due < params.as_of),
           count(*) FILTER (WHERE sla_pci_due IS NOT NULL)
    FROM clocked, params
    UNION ALL
    SELECT 'overdue_fedramp', 'medium', coalesce((SELECT criteria FROM framework_text WHERE framework = 'fedramp'), 'FedRAMP ConMon'),
           'open gaps past their FedRAMP due date',
           list(gap_id ORDER BY gap_id) FILTER (WHERE sla_fedramp_due < params.as_of),
           count(DISTINCT vm_id) FILTER (WHERE sla_fedramp_due < params.as_of),
           count(*) FILTER (WHERE sla_fedramp_due IS NOT NULL)
    FROM clocked, params
    UNION ALL
    SELECT 'overdue_cisa_bod2604', 'high', coalesce((SELECT criteria FROM framework_text WHERE framework = 'cisa_bod2604'), 'CISA BOD 26-04'),
           'open gaps past their CISA BOD 26-04 tier due date',
           list(gap_id ORDER BY gap_id) FILTER (WHERE sla_bod2604_due < params.as_of),
           count(DISTINCT vm_id) FILTER (WHERE sla_bod2604_due < params.as_of),
           count(*) FILTER (WHERE sla_bod2604_due IS NOT NULL)
    FROM clocked, params
    UNION ALL
    SELECT 'stale_assessment', 'medium',
           'NIST SP 800-53 SI-2(2): automated determination of installed updates at a set frequency (Azure Update Manager periodic assessment: 24 h)',
           'machines with no successful assessment within the freshness window (their patch state is unknown)',
           list(gap_id ORDER BY gap_id) FILTER (WHERE gap_type = 'stale_assessment'),
           count(DISTINCT vm_id) FILTER (WHERE gap_type = 'stale_assessment'),
           (SELECT count(*) FROM marts.vm_inventory)
    FROM gaps
),
gap_findings AS (
    SELECT
        a.rule,
        a.severity,
        'fleet' AS subject,
        a.criteria,
        CASE WHEN a.rule = 'stale_assessment'
            THEN format('{} of {} machines: {} (as of {})', len(a.gap_ids), a.population, a.what, strftime(p.as_of, '%Y-%m-%d'))
            ELSE format('{} of {} {} (on {} machine(s); as of {})', len(a.gap_ids), a.population, a.what, a.machines,
                        strftime(p.as_of, '%Y-%m-%d'))
        END AS condition,
        json_object('as_of', p.as_of, 'affected', len(a.gap_ids), 'population', a.population,
                    'machines', a.machines, 'gap_ids', a.gap_ids)::VARCHAR AS evidence,
        'marts.compliance_gaps' AS source_table,
        NULL::VARCHAR AS patch_key,
        NULL::VARCHAR AS asset_category,
        NULL::VARCHAR AS environment,
        NULL::VARCHAR AS vm_id,
        len(a.gap_ids)::INTEGER AS affected,
        a.population::INTEGER AS population
    FROM aggregated AS a, params AS p
    WHERE len(coalesce(a.gap_ids, [])) > 0
),
stage5 AS (
    SELECT rule, severity, subject, criteria, condition, evidence, 'marts.authorization_findings' AS source_table,
           patch_key, asset_category, environment, vm_id
    FROM marts.authorization_findings
    UNION ALL
    SELECT rule, severity, subject, criteria, condition, evidence, 'marts.authorization_install_findings',
           patch_key, asset_category, environment, vm_id
    FROM marts.authorization_install_findings
),
stage5_findings AS (
    SELECT s.*, 1 AS affected, NULL::INTEGER AS population FROM stage5 AS s
),
-- The automatic-updates control brings its own cause, effect and recommendation per finding.
auto_update_findings AS (
    SELECT rule, severity, subject, criteria, condition, evidence, 'marts.auto_update_findings' AS source_table,
           patch_key, asset_category, environment, vm_id, 1 AS affected, NULL::INTEGER AS population,
           cause AS own_cause, effect AS own_effect, recommendation AS own_recommendation
    FROM marts.auto_update_findings
    UNION ALL
    SELECT rule, severity, subject, criteria, condition, evidence, 'marts.rollback_findings', patch_key,
           asset_category, environment, vm_id, 1, NULL::INTEGER, cause, effect, recommendation
    FROM marts.rollback_findings
    UNION ALL
    SELECT rule, severity, subject, criteria, condition, evidence, 'marts.maintenance_findings', patch_key,
           asset_category, environment, vm_id, 1, NULL::INTEGER, cause, effect, recommendation
    FROM marts.maintenance_findings
),
-- What arrived after the date for the days up to it (a pack as known then did not have it).
arrival_findings AS (
    SELECT 'late_scan_file' AS rule, 'medium' AS severity, 'file/' || subject AS subject,
           'Audit trail completeness (NIST SP 800-53 AU-10, SOX ITGC): evidence for a period is the evidence that existed at its end, later corrections shown as such' AS criteria,
           format('{} ({}) holds rows of {} to {} and landed on {}, {} day(s) after {}', subject, source,
                  covers_from, covers_to, strftime(arrived_at AT TIME ZONE 'UTC', '%Y-%m-%d %H:%M UTC'),
                  days_late, as_of) AS condition,
           json_object('file', subject, 'raw_table', source, 'source_sha256', source_sha256,
                       'covers_from', covers_from, 'covers_to', covers_to, 'arrived_at', arrived_at) AS evidence,
           'marts.late_arrivals' AS source_table, NULL AS patch_key, NULL AS asset_category, NULL AS environment,
           NULL AS vm_id, 1 AS affected, NULL::INTEGER AS population,
           'The export or capture reached the estate after the period closed (a delayed upload, a re-run capture).' AS own_cause,
           'A pack produced at the period end lacked these rows; the figures as corrected since differ from those known then.' AS own_effect,
           'Compare the pack as known then with this one (patchledger report --as-known-then); find why the file was late.' AS own_recommendation
    FROM marts.late_arrivals WHERE kind = 'scan_file'
    UNION ALL
    SELECT 'register_row_recorded_late', 'medium', 'register/' || source,
           'SOX ITGC change management: approvals, tests and exceptions are recorded when they happen, not after the fact',
           format('{} row(s) of registers/{}.csv for events on or before {} were first recorded after it (first: {}, arrived {})',
                  count(*), source, any_value(as_of), min(subject ORDER BY subject),
                  strftime(min(arrived_at) AT TIME ZONE 'UTC', '%Y-%m-%d %H:%M UTC')),
           json_object('rows', list(subject ORDER BY subject), 'first_arrived_at', min(arrived_at),
                       'last_arrived_at', max(arrived_at)),
           'marts.late_arrivals', NULL, NULL, NULL, NULL, count(*)::INTEGER, NULL::INTEGER,
           'Records entered after the event (backdated), or a register first loaded after the period.',
           'Evidence for the period did not exist at its end: a backdated approval can make a change look authorized.',
           'Review each row against its change ticket; record approvals and tests when they happen.'
    FROM marts.late_arrivals WHERE kind = 'register_row'
    GROUP BY source
),
all_findings AS (
    SELECT * FROM arrival_findings
    UNION ALL BY NAME
    SELECT * FROM gap_findings
    UNION ALL BY NAME
    SELECT * FROM stage5_findings
    UNION ALL BY NAME
    SELECT * FROM auto_update_findings
),
-- Cause, effect and recommendation per rule (Yellow Book elements; causes are the usual ones,
-- to be confirmed with management in the exit meeting).
explanations AS (
    SELECT * FROM (VALUES
        ('installed_unauthorized',
         'Patches are installed by automatic updates or manual runs outside the change process, or authorizations are not recorded for the scope.',
         'Unapproved changes in production: the change population is incomplete and untested code may run on in-scope systems.',
         'Record an authorization for every production scope before deployment, restrict patch orchestration to authorized patches (maintenance configuration include lists), and review these installs retrospectively.'),
        ('installed_rejected',
         'A rejected patch was still deployed (stale include list, manual install, or automatic updates).',
         'A change the CAB refused runs in production; known incompatibilities or defects may affect service.',
         'Roll back or re-authorize with justification; exclude rejected patches in the maintenance configurations.'),
        ('untested_in_production',
         'Test runs are not performed or not recorded for the asset category before production deployment.',
         'Untested changes in production raise the risk of outages and weaken reliance on the change-management control.',
         'Run and record a passing test per asset category before production authorization; treat emergency changes with a post-implementation review.'),
        ('kev_overdue',
         'Known exploited vulnerabilities are not prioritized over routine patching, or deployment failed.',
         'Systems stay exposed to vulnerabilities with active exploitation past CISA''s deadline.',
         'Remediate KEV gaps first (emergency change if needed), isolate affected systems that cannot be patched, and track each to closure.'),
        ('overdue_internal',
         'Patching capacity or maintenance windows do not meet the internal timelines, or deployments fail.',
         'Vulnerabilities stay open longer than the organization''s accepted risk.',
         'Schedule the overdue gaps (marts.remediation_schedule), fix failing deployments, and raise exceptions with expiry where patching is not possible.'),
        ('overdue_pci_dss',
         'Critical patches on cardholder-data systems are not deployed within one month of release.',
         'Non-compliance with PCI DSS 6.3.3; cardholder data exposed to known critical vulnerabilities.',
         'Deploy critical patches to pci-scope machines within the month of release; add a pre-deadline alert.'),
        ('overdue_fedramp',
         'Remediation from detection exceeds the FedRAMP timelines (high 30, moderate 90, low 180 days).',
         'POA&M items age beyond FedRAMP limits; authorization may be at risk.',
         'Open POA&M items with milestones for each overdue finding and remediate or request a deviation.'),
        ('overdue_cisa_bod2604',
         'BOD 26-04 tiers (exposure, KEV listing, automatable, technical impact) are not used to prioritize.',
         'Internet-exposed or exploited vulnerabilities stay open past the BOD 26-04 benchmark.',
         'Prioritize by BOD 26-04 tier; perform forensic triage where the tier requires it.'),
        ('stale_assessment',
         'The periodic assessment is disabled, the agent is unhealthy, or the machine is off or unreachable.',
         'Patch state is unknown for these machines, so gaps on them cannot be detected (population incomplete).',
         'Restore periodic assessment (Azure Update Manager), investigate the agent, and remove decommissioned machines from inventory.'),
        ('sod_tester_approver',
         'Small teams, or no tool-enforced separation between testing and approval.',
         'One person can test and approve their own change: the approval does not independently check the test.',
         'Enforce approver <> tester in the authorization workflow and re-approve the affected changes.'),
        ('sod_requester_approver',
         'No tool-enforced separation between requester and approver.',
         'A change can be requested and approved by the same person without independent review.',
         'Enforce approver <> requester and re-approve the affected changes.'),
        ('production_without_test',
         'Production authorization granted before (or without) a passing test in the category.',
         'Untested changes may be authorized for production.',
         'Require a passing test that ended before the authorization, or classify the change as emergency with a PIR.'),
        ('emergency_without_pir',
         'Post-implementation reviews of emergency changes are not tracked.',
         'Emergency changes escape retrospective review.',
         'Complete the PIR within the policy window and track it in the change ticket.'),
        ('illegal_transition',
         'The authorization register is edited outside the state machine.',
         'The authorization history is not reliable evidence.',
         'Correct the register through new events and restrict direct edits.'),
        ('exception_expired_active',
         'Exceptions are not reviewed at expiry.',
         'Risk acceptance has lapsed but the gap is still treated as accepted.',
         'Renew (with approval) or close expired exceptions and remediate the gaps.'),
        ('exception_self_approved',
         'No separation of duties in the exception process.',
         'Risk accepted without independent approval.',
         'Have an independent risk owner approve the exception.'),
        ('exception_without_expiry',
         'The exception process does not require an expiry date.',
         'Open-ended risk acceptance that is never reviewed.',
         'Set an expiry and review cadence on every exception.'),
        ('exception_unapproved',
         'Exceptions are recorded before approval.',
         'Risk accepted without approval.',
         'Approve or revoke the exception.'),
        ('install_before_approval',
         'Deployment ran ahead of the approval (automatic updates, or approval recorded late).',
         'Changes implemented before authorization.',
         'Block deployment until authorization is recorded; review these installs retrospectively.'),
        ('production_install_without_test',
         'No passing test in the machine''s category before the install.',
         'Untested change implemented in production.',
         'Test per category before deployment; emergency changes need a PIR.'),
        ('rogue_patch',
         'A patch linked to incidents or rollbacks is still deployable.',
         'Known-bad patch may be deployed further and cause outages.',
         'Defer or reject the patch and exclude it from maintenance configurations.')
    ) AS t(rule, cause, effect, recommendation)
)
SELECT
    sha256(f.rule || '|' || f.subject) AS finding_id,
    f.rule,
    f.severity,
    f.subject,
    f.criteria,
    f.condition,
    f.evidence,
    coalesce(x.cause, f.own_cause, 'To be established with management.') AS cause,
    coalesce(x.effect, f.own_effect, 'See criteria.') AS effect,
    coalesce(x.recommendation, f.own_recommendation, 'Remediate and document the corrective action.') AS recommendation,
    f.source_table,
    f.patch_key,
    f.asset_category,
    f.environment,
    f.vm_id,
    f.affected,
    f.population,
    (SELECT as_of FROM params) AS as_of
FROM all_findings AS f
LEFT JOIN explanations AS x USING (rule)
ORDER BY f.rule, f.subject
