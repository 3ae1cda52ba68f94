-- @table Authorized-versus-installed gaps as of the evaluation date: one row per machine, patch and gap type. Supersedence-aware: a patch whose superseding patch is installed is superseded_satisfied in marts.vm_patch_state, not a gap. Stale machines get one stale_assessment gap each (patch_key NULL).
-- @column gap_id: Stable id: GAP- and the first 20 hex digits of sha256(vm_id|patch_key|gap_type); the same gap keeps its id across runs.
-- @column vm_id: Machine (lower-case ARM id, or nonazure/<computer>).
-- @column vm_name: Machine name.
-- @column patch_key: KB digits (Windows) or <package>_<version> (Linux); NULL for stale_assessment.
-- @column kb: KB digits where the patch has one.
-- @column gap_type: authorized_missing, failed_reapply, pending_reboot, available_unauthorized, installed_unauthorized, installed_rejected, untested_in_production or stale_assessment.
-- @column state: Canonical state of the patch on the machine that gave rise to the gap.
-- @column title: Patch title.
-- @column severity: Highest MSRC severity of the patch (Critical, Important, Moderate, Low); for Linux packages mapped from the classification (Critical -> Critical, Security -> Important, else Low).
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
            WHEN s.state = 'missing' AND a.status = 'authorized' THEN 'authorized_missing'
            WHEN s.state = 'missing' AND coalesce(a.status, '') NOT IN ('authorized', 'rejected') THEN 'available_unauthorized'
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
        f.epss,
        i.name AS vm_name,
        i.owner,
        i.criticality,
        coalesce(i.pci_scope, false) AS pci_scope,
        -- Clocks: release falls back to detection for patches without a release date.
        CASE WHEN g.gap_type IN ('authorized_missing', 'available_unauthorized', 'failed_reapply', 'pending_reboot') THEN (
            SELECT CASE p.clock WHEN 'release' THEN coalesce(g.released_at, g.first_seen_at) ELSE g.first_seen_at END::DATE
                   + to_days(p.days)
            FROM policy AS p WHERE p.framework = 'internal' AND p.severity = g.severity
        ) END AS sla_internal_due,
        CASE WHEN g.gap_type IN ('authorized_missing', 'available_unauthorized', 'failed_reapply', 'pending_reboot')
                  AND coalesce(i.pci_scope, false) THEN (
            SELECT (coalesce(g.released_at, g.first_seen_at)::DATE + to_months(p.months))::DATE
            FROM policy AS p WHERE p.framework = 'pci_dss' AND p.severity = g.severity
        ) END AS sla_pci_due,
        CASE WHEN g.gap_type IN ('authorized_missing', 'available_unauthorized', 'failed_reapply', 'pending_reboot') THEN (
            SELECT (g.first_seen_at::DATE + to_days(p.days))::DATE
            FROM policy AS p WHERE p.framework = 'fedramp' AND p.severity = g.severity
        ) END AS sla_fedramp_due,
        CASE WHEN g.gap_type IN ('authorized_missing', 'available_unauthorized', 'failed_reapply', 'pending_reboot')
                  AND EXISTS (SELECT 1 FROM policy AS p WHERE p.framework = 'cisa_kev') THEN f.kev_due_date END AS sla_kev_due
    FROM gaps AS g
    JOIN inventory AS i USING (vm_id)
    LEFT JOIN cve_facts AS f ON f.patch_key = g.patch_key
),
due AS (
    SELECT
        *,
        least(sla_internal_due::DATE, sla_pci_due::DATE, sla_fedramp_due::DATE, sla_kev_due::DATE) AS sla_due
    FROM deadlines
),
scored AS (
    SELECT
        *,
        CASE sla_due
            WHEN sla_kev_due THEN 'cisa_kev'
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
    sla_internal_due::DATE AS sla_internal_due,
    sla_pci_due::DATE AS sla_pci_due,
    sla_fedramp_due::DATE AS sla_fedramp_due,
    sla_kev_due::DATE AS sla_kev_due,
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
    $as_of::DATE AS as_of
FROM scored
ORDER BY priority DESC, gap_id
