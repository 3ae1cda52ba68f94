-- @table Remediation episodes up to the end of $as_of, one row per machine, fix lineage and episode: how long each machine stayed exposed before the fix (NIST SP 800-53 SI-2(3), 800-40r4 3.6). A lineage is marts.patch_fix_lineage's lineage_id (a patch without one, such as a Linux package, is its own lineage). Built from marts.vm_patch_history: the state of every patch of the lineage is known at each moment one of them changes; the lineage is open at a moment when some patch of it is missing, failed, not_selected or installed_pending_reboot and no installed patch on the machine is that patch or supersedes it (marts.patch_supersedence_closure). An episode opens at the first open moment, closes at the first moment the lineage is no longer open: normally the installation (installed, never installed_pending_reboot) of the patch or of a superseding one, which then carries the original opened_at (time-to-fix carries over); and a new episode opens when the lineage is open again (reopened when a patch that covers it had been installed before: a regression).
-- @column episode_id: Stable id: EPI- and the first 20 hex digits of sha256(vm_id|lineage_id|opened_at as ISO 8601 UTC).
-- @column vm_id: Machine (lower-case ARM id, or nonazure/<computer>).
-- @column lineage_id: Fix lineage (KB digits of the lineage root), or the patch_key of a patch without lineage.
-- @column opened_at: First observation of the open lineage (missing, failed, not_selected or pending reboot, uncovered).
-- @column closed_at: First observation after which nothing of the lineage is open; NULL while open.
-- @column closing_patch_key: The patch whose installation closed the episode (the newest one installed at closed_at); NULL while open or when the episode ended because its patches became not applicable.
-- @column close_reason: installed, not_applicable, or NULL while open.
-- @column days_open: Whole UTC days from opened_at to closed_at (to $as_of while open).
-- @column reopened: True when a patch that covers (is, or supersedes) one of the opening patches had been installed on the machine before opened_at: a regression.
-- @column episode_seq: Position of the episode in the machine's lineage (1 = first).
-- @column opening_patch_key: The patch open at opened_at (the earliest released when several).
-- @column patch_keys: Every patch of the lineage that was open on the machine during the episode.
-- @column severity: Highest severity of those patches (Critical, Important, Moderate, Low), as in marts.compliance_gaps.
-- @column released_at: Release of the opening patch (clock of the release-based frameworks).
-- @column in_kev: True when a CVE fixed by one of the episode's patches was in CISA KEV by closed_at (by $as_of while open).
-- @column kev_date_added: Earliest KEV listing of those CVEs.
-- @column kev_due_date: Earliest KEV due date of those CVEs.
-- @column criticality: Criticality tag of the machine (marts.vm_inventory, current).
-- @column asset_category: Asset category of the machine (current).
-- @column environment: Environment tag of the machine (current).
-- @column owner: Owner tag of the machine (current).
-- @column internet_exposed: Internet-exposed tag of the machine (current; a BOD 26-04 input).
-- @column pci_scope: PCI-scope tag of the machine (current).
-- @column sla_internal_due: Due date under the internal policy (staging.sla_policy; clock: release of the opening patch, else opened_at).
-- @column sla_pci_due: Due date under PCI DSS 6.3.3 (pci-scope machines: one calendar month after release for Critical).
-- @column sla_fedramp_due: Due date under FedRAMP (from opened_at).
-- @column sla_kev_due: CISA KEV due date.
-- @column sla_bod2604_due: Due date under CISA BOD 26-04 (tier days from the earlier of the KEV listing and opened_at; NULL for next_upgrade or without CVEs).
-- @column bod2604_tier: BOD 26-04 tier: the most urgent of its patches' tiers at the machine's exposure (marts.patch_bod2604: KEV, exposure, CISA Vulnrichment SSVC, policy defaults where a CVE has none).
-- @column met_sla_internal: True when closed by the internal due date, false when closed later or still open after it; NULL when no due date applies or it has not passed yet.
-- @column met_sla_pci: As met_sla_internal, for PCI DSS 6.3.3.
-- @column met_sla_fedramp: As met_sla_internal, for FedRAMP.
-- @column met_sla_kev: As met_sla_internal, for the KEV due date.
-- @column met_sla_bod2604: As met_sla_internal, for BOD 26-04.
-- @column as_of: Evaluation date.
WITH
params AS (
    SELECT CAST($as_of AS DATE) AS as_of, timezone('UTC', (CAST($as_of AS DATE) + 1)::TIMESTAMP) AS cutoff
),
-- The instants each patch's state changes on each machine (sql/patch_state_changes.sql: the
-- same winner per instant as marts.vm_patch_state), kept day by day rather than derived from
-- every observation again.
changes AS (
    SELECT c.vm_id, c.patch_key, c.kb, c.lineage_id, c.state, c.observed_at
    FROM staging.patch_state_changes AS c
    CROSS JOIN params
    WHERE c.observed_at < params.cutoff
      -- An incremental build recomputes the machine x lineage pairs in $pairs ('<vm_id>|<lineage_id>';
      -- NULL: all of them).
      AND ($pairs IS NULL OR c.vm_id || '|' || c.lineage_id IN (SELECT unnest(CAST($pairs AS VARCHAR[]))))
),
-- Validity intervals of each patch state on each machine: [valid_from, valid_to).
intervals AS (
    SELECT
        vm_id, patch_key, kb, lineage_id, state,
        observed_at AS valid_from,
        lead(observed_at) OVER (PARTITION BY vm_id, patch_key ORDER BY observed_at) AS valid_to
    FROM changes
),
moments AS (
    SELECT DISTINCT vm_id, lineage_id, valid_from AS t FROM intervals
),
at_moment AS (
    SELECT m.vm_id, m.lineage_id, m.t, i.patch_key, i.kb, i.state, i.valid_from
    FROM moments AS m
    JOIN intervals AS i
      ON i.vm_id = m.vm_id AND i.lineage_id = m.lineage_id
     AND i.valid_from <= m.t AND (i.valid_to IS NULL OR i.valid_to > m.t)
),
installed_at_moment AS (
    SELECT vm_id, lineage_id, t, kb FROM at_moment WHERE state = 'installed' AND kb IS NOT NULL
),
-- Patches open at a moment: not installed, and no installed patch of the lineage supersedes them.
uncovered AS (
    SELECT b.vm_id, b.lineage_id, b.t, b.patch_key, b.kb
    FROM at_moment AS b
    WHERE b.state IN ('missing', 'failed', 'not_selected', 'installed_pending_reboot')
      AND NOT EXISTS (
          SELECT 1
          FROM installed_at_moment AS q
          JOIN marts.patch_supersedence_closure AS c ON c.kb = q.kb
          WHERE q.vm_id = b.vm_id AND q.lineage_id = b.lineage_id AND q.t = b.t
            AND c.superseded_kb = b.kb
      )
),
flags AS (
    SELECT m.vm_id, m.lineage_id, m.t, count(u.patch_key) > 0 AS is_open
    FROM moments AS m
    LEFT JOIN uncovered AS u USING (vm_id, lineage_id, t)
    GROUP BY m.vm_id, m.lineage_id, m.t
),
islands AS (
    SELECT
        *,
        sum(CASE WHEN is_open IS DISTINCT FROM previous_open THEN 1 ELSE 0 END) OVER (
            PARTITION BY vm_id, lineage_id ORDER BY t ROWS UNBOUNDED PRECEDING
        ) AS island
    FROM (
        SELECT *, lag(is_open) OVER (PARTITION BY vm_id, lineage_id ORDER BY t) AS previous_open
        FROM flags
    )
),
spans AS (
    SELECT vm_id, lineage_id, island, bool_and(is_open) AS is_open, min(t) AS started_at, max(t) AS last_at
    FROM islands
    GROUP BY vm_id, lineage_id, island
),
episodes AS (
    SELECT
        o.vm_id,
        o.lineage_id,
        o.started_at AS opened_at,
        o.last_at,
        c.started_at AS closed_at
    FROM spans AS o
    LEFT JOIN spans AS c
      ON c.vm_id = o.vm_id AND c.lineage_id = o.lineage_id AND c.island = o.island + 1
    WHERE o.is_open
),
patch_facts AS (
    SELECT s.patch_key, c.released_at, s.severity
    FROM staging.patch_severity AS s
    LEFT JOIN (
        SELECT patch_key, any_value(released_at) AS released_at FROM marts.patch_catalog GROUP BY patch_key
    ) AS c USING (patch_key)
),
members AS (
    SELECT DISTINCT e.vm_id, e.lineage_id, e.opened_at, u.patch_key, u.kb, u.t = e.opened_at AS opening
    FROM episodes AS e
    JOIN uncovered AS u
      ON u.vm_id = e.vm_id AND u.lineage_id = e.lineage_id AND u.t BETWEEN e.opened_at AND e.last_at
),
member_facts AS (
    SELECT
        m.vm_id, m.lineage_id, m.opened_at,
        list(DISTINCT m.patch_key ORDER BY m.patch_key) AS patch_keys,
        arg_min(m.patch_key, (coalesce(f.released_at, 'infinity'::TIMESTAMPTZ), m.patch_key)) FILTER (WHERE m.opening)
            AS opening_patch_key,
        min(f.released_at) FILTER (WHERE m.opening) AS released_at,
        arg_max(f.severity, CASE f.severity WHEN 'Critical' THEN 4 WHEN 'Important' THEN 3
                                            WHEN 'Moderate' THEN 2 WHEN 'Low' THEN 1 ELSE 0 END) AS severity
    FROM members AS m
    LEFT JOIN patch_facts AS f USING (patch_key)
    GROUP BY m.vm_id, m.lineage_id, m.opened_at
),
member_cves AS (
    SELECT
        e.vm_id, e.lineage_id, e.opened_at,
        count(c.cve) > 0 AS has_cves,
        min(c.kev_date_added) FILTER (WHERE c.in_kev AND c.kev_date_added <= coalesce(e.closed_at::DATE, params.as_of))
            AS kev_date_added,
        min(c.kev_due_date) FILTER (WHERE c.in_kev AND c.kev_date_added <= coalesce(e.closed_at::DATE, params.as_of))
            AS kev_due_date
    FROM episodes AS e
    JOIN members AS m USING (vm_id, lineage_id, opened_at)
    CROSS JOIN params
    LEFT JOIN marts.patch_cves AS c ON c.patch_key = m.patch_key
    GROUP BY e.vm_id, e.lineage_id, e.opened_at
),
closing AS (
    SELECT e.vm_id, e.lineage_id, e.opened_at,
           max(a.patch_key) FILTER (WHERE a.state = 'installed' AND a.valid_from = e.closed_at) AS closing_patch_key
    FROM episodes AS e
    JOIN at_moment AS a ON a.vm_id = e.vm_id AND a.lineage_id = e.lineage_id AND a.t = e.closed_at
    GROUP BY e.vm_id, e.lineage_id, e.opened_at
),
regressions AS (
    SELECT DISTINCT m.vm_id, m.lineage_id, m.opened_at
    FROM members AS m
    JOIN intervals AS i
      ON i.vm_id = m.vm_id AND i.lineage_id = m.lineage_id AND i.state = 'installed'
     AND i.valid_from < m.opened_at
    WHERE m.opening
      AND (i.patch_key = m.patch_key
           OR EXISTS (SELECT 1 FROM marts.patch_supersedence_closure AS c
                      WHERE c.kb = i.kb AND c.superseded_kb = m.kb))
),
described AS (
    SELECT
        e.vm_id,
        e.lineage_id,
        e.opened_at,
        e.closed_at,
        CASE WHEN e.closed_at IS NOT NULL THEN cl.closing_patch_key END AS closing_patch_key,
        CASE WHEN e.closed_at IS NULL THEN NULL
             WHEN cl.closing_patch_key IS NOT NULL THEN 'installed'
             ELSE 'not_applicable' END AS close_reason,
        date_diff('day', e.opened_at::DATE, coalesce(e.closed_at::DATE, params.as_of))::INTEGER AS days_open,
        r.vm_id IS NOT NULL AS reopened,
        row_number() OVER (PARTITION BY e.vm_id, e.lineage_id ORDER BY e.opened_at)::INTEGER AS episode_seq,
        f.opening_patch_key,
        f.patch_keys,
        f.severity,
        f.released_at,
        k.kev_date_added IS NOT NULL AS in_kev,
        k.has_cves,
        k.kev_date_added,
        k.kev_due_date,
        i.criticality,
        i.asset_category,
        i.environment,
        i.owner,
        coalesce(i.internet_exposed, false) AS internet_exposed,
        coalesce(i.pci_scope, false) AS pci_scope,
        params.as_of
    FROM episodes AS e
    CROSS JOIN params
    JOIN member_facts AS f USING (vm_id, lineage_id, opened_at)
    JOIN member_cves AS k USING (vm_id, lineage_id, opened_at)
    LEFT JOIN closing AS cl USING (vm_id, lineage_id, opened_at)
    LEFT JOIN regressions AS r USING (vm_id, lineage_id, opened_at)
    LEFT JOIN marts.vm_inventory AS i ON i.vm_id = e.vm_id
),
-- BOD 26-04: the most urgent tier among the episode's patches at the machine's exposure.
episode_bod2604 AS (
    SELECT
        d.vm_id, d.lineage_id, d.opened_at,
        arg_min(p.tier, (coalesce(p.days, 2147483647), NOT p.forensic_triage, p.patch_key)) AS tier,
        arg_min(p.days, (coalesce(p.days, 2147483647), NOT p.forensic_triage, p.patch_key)) AS days
    FROM (
        SELECT vm_id, lineage_id, opened_at, internet_exposed, unnest(patch_keys) AS patch_key
        FROM described
        WHERE has_cves
    ) AS d
    JOIN marts.patch_bod2604 AS p ON p.patch_key = d.patch_key AND p.internet_exposed = d.internet_exposed
    GROUP BY d.vm_id, d.lineage_id, d.opened_at
),
dues AS (
    SELECT
        d.*,
        (
            SELECT (CASE p.clock WHEN 'release' THEN coalesce(d.released_at, d.opened_at) ELSE d.opened_at END::DATE
                    + to_days(p.days))::DATE
            FROM staging.sla_policy AS p WHERE p.framework = 'internal' AND p.severity = d.severity
        ) AS sla_internal_due,
        CASE WHEN d.pci_scope THEN (
            SELECT (coalesce(d.released_at, d.opened_at)::DATE + to_months(p.months))::DATE
            FROM staging.sla_policy AS p WHERE p.framework = 'pci_dss' AND p.severity = d.severity
        ) END AS sla_pci_due,
        (
            SELECT (d.opened_at::DATE + to_days(p.days))::DATE
            FROM staging.sla_policy AS p WHERE p.framework = 'fedramp' AND p.severity = d.severity
        ) AS sla_fedramp_due,
        CASE WHEN EXISTS (SELECT 1 FROM staging.sla_policy AS p WHERE p.framework = 'cisa_kev')
             THEN d.kev_due_date END AS sla_kev_due,
        (least(d.kev_date_added, d.opened_at::DATE) + to_days(b.days))::DATE AS sla_bod2604_due,
        b.tier AS bod2604_tier
    FROM described AS d
    LEFT JOIN episode_bod2604 AS b USING (vm_id, lineage_id, opened_at)
)
SELECT
    'EPI-' || left(sha256(vm_id || '|' || lineage_id || '|' || strftime(opened_at, '%Y-%m-%dT%H:%M:%S.%fZ')), 20)
        AS episode_id,
    vm_id,
    lineage_id,
    opened_at,
    closed_at,
    closing_patch_key,
    close_reason,
    days_open,
    reopened,
    episode_seq,
    opening_patch_key,
    patch_keys,
    severity,
    released_at,
    in_kev,
    kev_date_added,
    kev_due_date,
    criticality,
    asset_category,
    environment,
    owner,
    internet_exposed,
    pci_scope,
    sla_internal_due,
    sla_pci_due,
    sla_fedramp_due,
    sla_kev_due,
    sla_bod2604_due,
    bod2604_tier,
    CASE WHEN sla_internal_due IS NULL THEN NULL
         WHEN closed_at IS NOT NULL THEN closed_at::DATE <= sla_internal_due
         WHEN as_of > sla_internal_due THEN false END AS met_sla_internal,
    CASE WHEN sla_pci_due IS NULL THEN NULL
         WHEN closed_at IS NOT NULL THEN closed_at::DATE <= sla_pci_due
         WHEN as_of > sla_pci_due THEN false END AS met_sla_pci,
    CASE WHEN sla_fedramp_due IS NULL THEN NULL
         WHEN closed_at IS NOT NULL THEN closed_at::DATE <= sla_fedramp_due
         WHEN as_of > sla_fedramp_due THEN false END AS met_sla_fedramp,
    CASE WHEN sla_kev_due IS NULL THEN NULL
         WHEN closed_at IS NOT NULL THEN closed_at::DATE <= sla_kev_due
         WHEN as_of > sla_kev_due THEN false END AS met_sla_kev,
    CASE WHEN sla_bod2604_due IS NULL THEN NULL
         WHEN closed_at IS NOT NULL THEN closed_at::DATE <= sla_bod2604_due
         WHEN as_of > sla_bod2604_due THEN false END AS met_sla_bod2604,
    as_of
FROM dues
ORDER BY vm_id, lineage_id, episode_seq
