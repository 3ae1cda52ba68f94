-- @summary Every gap between what is authorized and what is installed, per machine and patch:
-- @summary authorized but missing, failed, waiting for a reboot, available but unauthorized, installed
-- @summary without or against authorization, untested in production, and machines whose assessment is
-- @summary stale. Each gap carries severity, CVEs, KEV and EPSS, its due date under each framework
-- @summary (internal, PCI DSS 6.3.3, FedRAMP, KEV, CISA BOD 26-04 tier), days overdue and a priority
-- @summary score. An approved, active, unexpired exception pauses the clocks for the days it covers.
-- @group stage6_patch_monitoring
-- @depends ledger.exceptions, ledger.patch_tests, marts.authorization_status, marts.patch_bod2604
-- @depends marts.patch_catalog, marts.patch_cves, marts.vm_inventory, marts.vm_patch_state
-- @depends staging.exceptions, staging.patch_tests, staging.sla_policy
-- @unique gap_id as gap_ids_unique: Each gap id names one gap: the evidence pack samples by id.
-- @table Authorized-versus-installed gaps as of the evaluation date: one row per machine, patch and gap type. Supersedence-aware: a patch whose superseding patch is installed is superseded_satisfied in marts.vm_patch_state, not a gap. Stale machines get one stale_assessment gap each (patch_key NULL). A patch an installation run listed as not selected (NotSelected, Excluded) is available and not installed: it is a gap like a missing one, by its authorization.
-- @column gap_id: Stable id: GAP- and the first 20 hex digits of sha256(vm_id|patch_key|gap_type); the same gap keeps its id across runs.
-- @column vm_id: Machine (lower-case ARM id, or nonazure/<computer>).
-- @column vm_name: Machine name.
-- @column patch_key: KB digits (Windows) or <package>_<version> (Linux); NULL for stale_assessment.
-- @column kb: KB digits where the patch has one.
-- @column gap_type: authorized_missing, failed_reapply, pending_reboot, available_unauthorized, installed_unauthorized, installed_rejected, untested_in_production or stale_assessment.
-- @column state: Canonical state of the patch on the machine that gave rise to the gap.
-- @column title: Patch title.
-- @column severity: Highest MSRC severity of the patch (Critical, Important, Moderate, Low); for a Linux package its OSV advisory's rating on the same scale when the catalog has one, else mapped from the classification (Critical -> Critical, Security -> Important, else Low).
-- @column cves: CVEs the patch fixes.
-- @column exploited: True when MSRC reports any of its CVEs exploited.
-- @column in_kev: True when any of its CVEs is in the CISA KEV catalog.
-- @column kev_due_date: Earliest KEV due date among its CVEs.
-- @column epss: Highest EPSS probability among its CVEs.
-- @column released_at: Vendor release date of the patch.
-- @column first_seen_at: First time our data showed the machine missing (or failing, or waiting for a reboot for) the patch.
-- @column age_days: Days from first_seen_at to the evaluation date.
-- @column owner: Owner tag of the machine.
-- @column criticality: Criticality tag of the machine.
-- @column environment: Environment tag of the machine.
-- @column asset_category: Asset category of the machine.
-- @column authorization_status: Current authorization state of the patch for the machine's scope (NULL when never proposed).
-- @column authorized_at: When the patch was authorized for the machine's scope.
-- @column sla_internal_due: Due date under the internal policy (clock: release, else detection).
-- @column sla_pci_due: Due date under PCI DSS 6.3.3 (critical patches on pci-scope machines: one calendar month after release).
-- @column sla_fedramp_due: Due date under FedRAMP (from detection: high 30, moderate 90, low 180 days).
-- @column sla_kev_due: CISA KEV due date.
-- @column sla_due: The earliest of the due dates that apply.
-- @column sla_framework: The framework whose due date is sla_due.
-- @column days_overdue: Days past sla_due on the evaluation date (0 when not yet due).
-- @column priority: Priority score 0-100 (see docs/warehouse.md: severity, KEV, exploited, EPSS, criticality, lateness).
-- @column as_of: Evaluation date.
-- @column sla_bod2604_due: Due date under CISA BOD 26-04 (decision table in staging.sla_policy: in KEV x internet-exposed tag x SSVC automatable x technical impact -> 3 / 14 / 60 days from the earlier of the KEV listing and detection, marts.patch_bod2604); NULL when the tier is next_upgrade, the patch fixes no CVE, or the framework is disabled.
-- @column bod2604_tier: BOD 26-04 tier: 3d_forensic_triage, 3d, 14d, 60d or next_upgrade (fix on the next system upgrade), from marts.patch_bod2604: the patch's most urgent CVE decided on KEV, the machine's exposure and CISA Vulnrichment's Automatable and Technical Impact.
-- @column bod2604_ssvc_source: vulnrichment when the tier's SSVC inputs came from CISA Vulnrichment, policy_default when the deciding CVE has no Vulnrichment decision and the policy defaults (automatable no, technical impact total) stood in; NULL without a tier.
-- @column bod2604_forensic_triage: True when the BOD 26-04 combination also requires forensic triage.
-- @column bod2604_clock_start: Start of the BOD 26-04 clock: the earlier of the KEV listing (dateAdded) and first_seen_at.
-- @column internet_exposed: The machine's internet-exposed tag (a BOD 26-04 input).
-- @column exception_id: The approved, active, unexpired exception (staging.exceptions) covering the gap, if any; the one approved first when several cover it. Only missing, failed and pending-reboot gaps are covered.
-- @column paused_days: Days the exception paused the clock of sla_framework (the overlap of [approved_at, expires_at] with [clock start, as_of], whole UTC days); every framework's due date above already includes its own pause. 0 without exception.
WITH
inventory AS (
    SELECT * FROM marts.vm_inventory
),
policy AS (
    SELECT * FROM staging.sla_policy
),
cve_facts AS (
    SELECT
        patch_key,
        list(DISTINCT cve ORDER BY cve) AS cves,
        bool_or(coalesce(exploited, false)) AS exploited,
        bool_or(coalesce(in_kev, false)) AS in_kev,
        min(kev_due_date) AS kev_due_date,
        min(kev_date_added) FILTER (WHERE in_kev) AS kev_date_added,
        max(epss) AS epss
    FROM marts.patch_cves
    GROUP BY patch_key
),
state AS (
    SELECT s.*
    FROM marts.vm_patch_state AS s
),
-- The most specific authorization scope wins: category and environment, then either, then '*'.
scope_authorization AS (
    SELECT vm_id, patch_key, status, authorized_at
    FROM (
        SELECT
            s.vm_id,
            s.patch_key,
            a.status,
            a.authorized_at,
            row_number() OVER (
                PARTITION BY s.vm_id, s.patch_key
                ORDER BY (a.asset_category <> '*')::INT * 2 + (a.environment <> '*')::INT DESC,
                         a.status_since DESC
            ) AS specificity_rank
        FROM state AS s
        JOIN inventory AS i USING (vm_id)
        JOIN marts.authorization_status AS a
          ON a.patch_key = s.patch_key
         AND a.asset_category IN (i.asset_category, '*')
         AND a.environment IN (i.environment, '*')
    )
    WHERE specificity_rank = 1
),
tested AS (
    SELECT DISTINCT patch_key, asset_category
    FROM staging.patch_tests
    WHERE result = 'passed'
      -- a test that ended after the evaluation date had not passed yet
      AND coalesce(ended_at, started_at) < timezone('UTC', ($as_of::DATE + 1)::TIMESTAMP)
),
patch_gaps AS (
    SELECT
        s.vm_id,
        s.patch_key,
        s.kb,
        s.state,
        s.first_seen_at,
        coalesce(c.title, s.patch_name) AS title,
        coalesce(
            c.max_severity,
            s.msrc_severity,
            CASE s.classification WHEN 'Critical' THEN 'Critical' WHEN 'Security' THEN 'Important' ELSE 'Low' END
        ) AS severity,
        c.released_at,
        a.status AS authorization_status,
        a.authorized_at,
        i.environment,
        i.asset_category,
        CASE
            -- A patch an installation run left out (not_selected) is available and not installed: missing.
            WHEN s.state IN ('missing', 'not_selected') AND a.status = 'authorized' THEN 'authorized_missing'
            WHEN s.state IN ('missing', 'not_selected') AND coalesce(a.status, '') NOT IN ('authorized', 'rejected')
                THEN 'available_unauthorized'
            WHEN s.state = 'failed' THEN 'failed_reapply'
            WHEN s.state = 'installed_pending_reboot' THEN 'pending_reboot'
        END AS missing_gap,
        CASE
            WHEN i.environment = 'production' AND s.state IN ('installed', 'installed_pending_reboot')
                 AND a.status = 'rejected' THEN 'installed_rejected'
            WHEN i.environment = 'production' AND s.state IN ('installed', 'installed_pending_reboot')
                 AND coalesce(a.status, '') NOT IN ('authorized', 'rejected', 'revoked', 'expired')
                 AND a.authorized_at IS NULL THEN 'installed_unauthorized'
        END AS install_gap,
        CASE
            WHEN i.environment = 'production' AND s.state IN ('installed', 'installed_pending_reboot')
                 AND t.patch_key IS NULL THEN 'untested_in_production'
        END AS test_gap
    FROM state AS s
    JOIN inventory AS i USING (vm_id)
    LEFT JOIN marts.patch_catalog AS c ON c.patch_key = s.patch_key
    LEFT JOIN scope_authorization AS a ON a.vm_id = s.vm_id AND a.patch_key = s.patch_key
    LEFT JOIN tested AS t ON t.patch_key = s.patch_key AND t.asset_category = i.asset_category
    WHERE i.coverage_status <> 'unknown_stale'
),
typed AS (
    SELECT g.* EXCLUDE (missing_gap, install_gap, test_gap), t.gap_type
    FROM patch_gaps AS g,
         LATERAL (SELECT unnest([g.missing_gap, g.install_gap, g.test_gap]) AS gap_type) AS t
    WHERE t.gap_type IS NOT NULL
),
stale AS (
    SELECT
        vm_id,
        NULL::VARCHAR AS patch_key,
        NULL::VARCHAR AS kb,
        'unknown_stale' AS state,
        last_assessed_at AS first_seen_at,
        'No assessment within the freshness window' AS title,
        NULL::VARCHAR AS severity,
        NULL::TIMESTAMPTZ AS released_at,
        NULL::VARCHAR AS authorization_status,
        NULL::TIMESTAMPTZ AS authorized_at,
        environment,
        asset_category,
        'stale_assessment' AS gap_type
    FROM inventory
    WHERE coverage_status = 'unknown_stale'
),
gaps AS (
    SELECT * FROM typed
    UNION ALL BY NAME
    SELECT * FROM stale
),
deadlines AS (
    SELECT
        g.*,
        f.cves,
        coalesce(f.exploited, false) AS exploited,
        coalesce(f.in_kev, false) AS in_kev,
        f.kev_due_date,
        f.kev_date_added,
        f.epss,
        i.name AS vm_name,
        i.owner,
        i.criticality,
        coalesce(i.pci_scope, false) AS pci_scope,
        coalesce(i.internet_exposed, false) AS internet_exposed,
        g.gap_type IN ('authorized_missing', 'available_unauthorized', 'failed_reapply', 'pending_reboot') AS clocked,
        -- Clocks: release falls back to detection for patches without a release date.
        (
            SELECT CASE p.clock WHEN 'release' THEN coalesce(g.released_at, g.first_seen_at) ELSE g.first_seen_at END::DATE
            FROM policy AS p WHERE p.framework = 'internal' AND p.severity = g.severity
        ) AS internal_start,
        (
            SELECT p.days FROM policy AS p WHERE p.framework = 'internal' AND p.severity = g.severity
        ) AS internal_days,
        CASE WHEN coalesce(i.pci_scope, false) THEN (
            SELECT (coalesce(g.released_at, g.first_seen_at)::DATE + to_months(p.months))::DATE
            FROM policy AS p WHERE p.framework = 'pci_dss' AND p.severity = g.severity
        ) END AS pci_base_due,
        coalesce(g.released_at, g.first_seen_at)::DATE AS pci_start,
        (
            SELECT (g.first_seen_at::DATE + to_days(p.days))::DATE
            FROM policy AS p WHERE p.framework = 'fedramp' AND p.severity = g.severity
        ) AS fedramp_base_due,
        CASE WHEN EXISTS (SELECT 1 FROM policy AS p WHERE p.framework = 'cisa_kev') THEN f.kev_due_date END AS kev_base_due,
        -- BOD 26-04: the patch's most urgent CVE at the machine's exposure (marts.patch_bod2604).
        b.tier AS bod2604_tier,
        b.ssvc_source AS bod2604_ssvc_source,
        b.forensic_triage AS bod2604_forensic_triage,
        b.days AS bod2604_days,
        CASE WHEN b.tier IS NOT NULL THEN least(f.kev_date_added, g.first_seen_at::DATE) END AS bod2604_clock_start
    FROM gaps AS g
    JOIN inventory AS i USING (vm_id)
    LEFT JOIN cve_facts AS f ON f.patch_key = g.patch_key
    LEFT JOIN marts.patch_bod2604 AS b
      ON b.patch_key = g.patch_key
     AND g.gap_type IN ('authorized_missing', 'available_unauthorized', 'failed_reapply', 'pending_reboot')
     AND b.internet_exposed = coalesce(i.internet_exposed, false)
),
-- Exceptions that pause clocks: approved (an approver other than the requester), active, approved
-- by the end of as_of and not expired by then. Expired, revoked, unapproved, self-approved and
-- open-ended exceptions pause nothing (they are audit findings instead).
valid_exceptions AS (
    SELECT e.*
    FROM staging.exceptions AS e
    WHERE e.status = 'active'
      AND e.approver IS NOT NULL
      AND lower(e.approver) <> lower(coalesce(e.requested_by, ''))
      AND e.approved_at < timezone('UTC', ($as_of::DATE + 1)::TIMESTAMP)
      AND e.expires_at >= timezone('UTC', ($as_of::DATE + 1)::TIMESTAMP)
),
covering AS (
    SELECT
        d.vm_id,
        d.patch_key,
        d.gap_type,
        arg_min(e.exception_id, (e.approved_at, e.exception_id)) AS exception_id,
        min(e.approved_at)::DATE AS paused_from
    FROM deadlines AS d
    JOIN valid_exceptions AS e
      ON d.clocked
     AND (e.vm_id IS NULL OR e.vm_id = d.vm_id)
     AND (e.asset_category IS NULL OR e.asset_category IN ('*', d.asset_category))
     AND (e.patch_key IS NULL OR e.patch_key = d.patch_key)
     AND (e.cve IS NULL OR list_contains(coalesce(d.cves, []::VARCHAR[]), e.cve))
    GROUP BY ALL
),
paused AS (
    SELECT
        d.*,
        c.exception_id,
        -- Days of [paused_from, as_of] inside each clock's interval [start, as_of].
        CASE WHEN c.exception_id IS NOT NULL THEN greatest(0, date_diff('day', greatest(c.paused_from, d.internal_start), $as_of::DATE)) END AS internal_pause,
        CASE WHEN c.exception_id IS NOT NULL THEN greatest(0, date_diff('day', greatest(c.paused_from, d.pci_start), $as_of::DATE)) END AS pci_pause,
        CASE WHEN c.exception_id IS NOT NULL THEN greatest(0, date_diff('day', greatest(c.paused_from, d.first_seen_at::DATE), $as_of::DATE)) END AS fedramp_pause,
        CASE WHEN c.exception_id IS NOT NULL THEN greatest(0, date_diff('day', greatest(c.paused_from, d.kev_date_added), $as_of::DATE)) END AS kev_pause,
        CASE WHEN c.exception_id IS NOT NULL THEN greatest(0, date_diff('day', greatest(c.paused_from, d.bod2604_clock_start), $as_of::DATE)) END AS bod2604_pause
    FROM deadlines AS d
    LEFT JOIN covering AS c USING (vm_id, patch_key, gap_type)
),
framework_dues AS (
    SELECT
        *,
        CASE WHEN clocked THEN (internal_start + to_days(internal_days + coalesce(internal_pause, 0)))::DATE END AS sla_internal_due,
        CASE WHEN clocked THEN (pci_base_due + to_days(coalesce(pci_pause, 0)))::DATE END AS sla_pci_due,
        CASE WHEN clocked THEN (fedramp_base_due + to_days(coalesce(fedramp_pause, 0)))::DATE END AS sla_fedramp_due,
        CASE WHEN clocked THEN (kev_base_due + to_days(coalesce(kev_pause, 0)))::DATE END AS sla_kev_due,
        CASE WHEN clocked THEN (bod2604_clock_start + to_days(bod2604_days + coalesce(bod2604_pause, 0)))::DATE END AS sla_bod2604_due
    FROM paused
),
due AS (
    SELECT
        *,
        least(sla_internal_due, sla_pci_due, sla_fedramp_due, sla_kev_due, sla_bod2604_due) AS sla_due
    FROM framework_dues
),
scored AS (
    SELECT
        *,
        CASE sla_due
            WHEN sla_kev_due THEN 'cisa_kev'
            WHEN sla_bod2604_due THEN 'cisa_bod2604'
            WHEN sla_pci_due THEN 'pci_dss'
            WHEN sla_internal_due THEN 'internal'
            WHEN sla_fedramp_due THEN 'fedramp'
        END AS sla_framework,
        greatest(0, coalesce(date_diff('day', sla_due, $as_of::DATE), 0))::INTEGER AS days_overdue
    FROM due
)
SELECT
    'GAP-' || left(sha256(vm_id || '|' || coalesce(patch_key, '') || '|' || gap_type), 20) AS gap_id,
    vm_id,
    vm_name,
    patch_key,
    kb,
    gap_type,
    state,
    title,
    severity,
    coalesce(cves, []::VARCHAR[]) AS cves,
    exploited,
    in_kev,
    kev_due_date,
    epss,
    released_at,
    first_seen_at,
    greatest(0, date_diff('day', first_seen_at::DATE, $as_of::DATE))::INTEGER AS age_days,
    owner,
    criticality,
    environment,
    asset_category,
    authorization_status,
    authorized_at,
    sla_internal_due,
    sla_pci_due,
    sla_fedramp_due,
    sla_kev_due,
    sla_due,
    sla_framework,
    days_overdue,
    least(100, round(
        CASE severity WHEN 'Critical' THEN 35 WHEN 'Important' THEN 25 WHEN 'Moderate' THEN 12 WHEN 'Low' THEN 5 ELSE 10 END
        + CASE WHEN in_kev THEN 20 ELSE 0 END
        + CASE WHEN exploited THEN 10 ELSE 0 END
        + 10 * coalesce(epss, 0)
        + CASE criticality WHEN 'critical' THEN 15 WHEN 'high' THEN 10 WHEN 'medium' THEN 5 ELSE 0 END
        + 10 * least(days_overdue, 30) / 30.0
        + CASE gap_type WHEN 'installed_rejected' THEN 15 WHEN 'untested_in_production' THEN 5 ELSE 0 END,
        1))::DOUBLE AS priority,
    $as_of::DATE AS as_of,
    sla_bod2604_due,
    bod2604_tier,
    bod2604_forensic_triage,
    bod2604_ssvc_source,
    bod2604_clock_start,
    internet_exposed,
    exception_id,
    coalesce(CASE sla_framework
        WHEN 'cisa_kev' THEN kev_pause
        WHEN 'cisa_bod2604' THEN bod2604_pause
        WHEN 'pci_dss' THEN pci_pause
        WHEN 'internal' THEN internal_pause
        WHEN 'fedramp' THEN fedramp_pause
        ELSE fedramp_pause
    END, 0)::INTEGER AS paused_days
FROM scored
ORDER BY priority DESC, gap_id
