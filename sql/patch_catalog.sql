-- @summary The patch catalog: one row per patch with severity, CVSS, exploit/KEV status, products, fixed builds, supersedence and fix lineage.
-- @group stage3_notification_channels
-- @depends staging.msrc_fixes, staging.osv_fixes, marts.patch_cves, marts.patch_supersedence
-- @depends marts.patch_fix_lineage, staging.patch_observations
-- @unique patch_key as patch_catalog_key_unique: Every catalog row has a patch_key and no patch_key appears twice.
-- @table The patch catalog from the vendor bulletins as of $as_of (patches released on or before it): one row per patch (a KB, or a non-KB fix such as an Azure Linux package version or an Edge build, or a Linux distribution package version fixed by an OSV advisory), with its worst severity and CVSS, exploit and KEV status, products, fixed builds and supersedence.
-- @column patch_key: The patch: KB digits for a Windows update, <package>_<version> for a Linux package, <product>_<version> for other non-KB fixes. Unique, never NULL.
-- @column kb: KB digits, NULL for non-KB fixes.
-- @column title: Descriptive title: "<release month> <subtype> for <product> (KB...)" for KBs, "<package or product> <build>" otherwise.
-- @column classification: Normalized classification: Security for every MSRC vendor fix and OSV advisory fix.
-- @column sub_types: MSRC remediation subtypes (Security Update, Monthly Rollup, Security Only, ...).
-- @column max_severity: Highest severity over its CVEs and products on the MSRC scale (Critical, Important, Moderate, Low, None; NULL when none is given). OSV severities are mapped to that scale (staging.osv_fixes).
-- @column max_cvss: Highest CVSS base score over its CVEs and products.
-- @column released_at: Release of the patch: initial release of the earliest MSRC document listing it (NULL for Mariner pseudo-months), or the earliest publication (else modification) of an OSV advisory naming it.
-- @column release_month: Release month of that document or advisory.
-- @column restart_required: Yes if any product needs a restart, else Maybe, else No; NULL when not stated.
-- @column exploited: MSRC reports any of its CVEs exploited (OSV does not report exploitation; see in_kev).
-- @column publicly_disclosed: MSRC reports any of its CVEs publicly disclosed.
-- @column in_kev: Any of its CVEs is in CISA KEV as of the evaluation date.
-- @column kev_due_date: Earliest KEV due date among its CVEs.
-- @column max_epss: Highest EPSS probability among its CVEs.
-- @column cve_count: Number of distinct CVEs it fixes.
-- @column cves: The CVEs it fixes.
-- @column product_ids: MSRC product ids (or OSV ecosystems) it applies to.
-- @column products: Product names it applies to.
-- @column fixed_builds: Fixed builds it brings (see marts.patch_fixed_builds for the per-product rule).
-- @column supersedes: KB digits it supersedes directly.
-- @column superseded_by: KB digits of the patches that supersede it directly.
-- @column fix_lineage_id: Root KB of its supersedence lineage (marts.patch_fix_lineage); NULL for non-KB fixes.
-- @column document_ids: MSRC documents and OSV advisories that list it.
-- @column remediation_url: Download or release-notes URL (the advisory page for OSV).
-- @column sources: Bulletins that list it: msrc, osv.
WITH
msrc AS (
    SELECT
        patch_key, kb, sub_type, severity, severity_rank, cvss_base, released_at, release_month,
        restart_required, exploited, publicly_disclosed, cve, product_id, product, fixed_build,
        fix_version, package, document_id, remediation_url, supersedes, 'msrc' AS source
    FROM staging.msrc_fixes
    WHERE patch_key IS NOT NULL
),
osv AS (
    SELECT
        patch_key,
        NULL::VARCHAR AS kb,
        NULL::VARCHAR AS sub_type,
        severity,
        severity_rank,
        cvss_base,
        coalesce(published_at, modified_at) AS released_at,
        CAST(date_trunc('month', coalesce(published_at, modified_at)) AS DATE) AS release_month,
        NULL::VARCHAR AS restart_required,
        NULL::BOOLEAN AS exploited,
        NULL::BOOLEAN AS publicly_disclosed,
        cve,
        ecosystem AS product_id,
        package || ' on ' || ecosystem AS product,
        fixed_version AS fixed_build,
        fixed_version AS fix_version,
        package,
        advisory_id AS document_id,
        advisory_url AS remediation_url,
        []::VARCHAR[] AS supersedes,
        'osv' AS source
    FROM staging.osv_fixes
    WHERE patch_key IS NOT NULL
),
fixes AS (
    SELECT * FROM msrc
    UNION ALL BY NAME
    SELECT * FROM osv
),
cves AS (
    SELECT patch_key, bool_or(in_kev) AS in_kev, min(kev_due_date) AS kev_due_date, max(epss) AS max_epss
    FROM marts.patch_cves
    GROUP BY patch_key
),
superseded_by AS (
    SELECT superseded_kb AS kb, list(DISTINCT kb ORDER BY kb) AS superseded_by
    FROM marts.patch_supersedence
    -- only successors released by the evaluation date
    WHERE kb NOT IN (SELECT kb FROM msrc WHERE kb IS NOT NULL GROUP BY kb
                     HAVING CAST(min(released_at) AS DATE) > CAST($as_of AS DATE))
    GROUP BY superseded_kb
),
per_patch AS (
    SELECT
        patch_key,
        any_value(kb) AS kb,
        list(DISTINCT sub_type ORDER BY sub_type) FILTER (WHERE sub_type IS NOT NULL) AS sub_types,
        arg_max(severity, severity_rank) FILTER (WHERE severity_rank IS NOT NULL) AS max_severity,
        max(cvss_base) AS max_cvss,
        min(released_at) AS released_at,
        min(release_month) AS release_month,
        CASE
            WHEN bool_or(lower(restart_required) = 'yes') THEN 'Yes'
            WHEN bool_or(lower(restart_required) = 'maybe') THEN 'Maybe'
            WHEN bool_or(lower(restart_required) = 'no') THEN 'No'
        END AS restart_required,
        coalesce(bool_or(exploited), false) AS exploited,
        coalesce(bool_or(publicly_disclosed), false) AS publicly_disclosed,
        count(DISTINCT cve) AS cve_count,
        list(DISTINCT cve ORDER BY cve) AS cves,
        list(DISTINCT product_id ORDER BY product_id) AS product_ids,
        list(DISTINCT product ORDER BY product) FILTER (WHERE product IS NOT NULL) AS products,
        min(product) AS first_product,
        count(DISTINCT product) AS product_count,
        list(DISTINCT fixed_build ORDER BY fixed_build) FILTER (WHERE nullif(fixed_build, '-') IS NOT NULL) AS fixed_builds,
        min(fix_version) AS first_fix_version,
        min(package) AS package,
        min(sub_type) AS first_sub_type,
        list(DISTINCT document_id ORDER BY document_id) AS document_ids,
        min(remediation_url) AS remediation_url,
        flatten(list(supersedes)) AS all_supersedes,
        list(DISTINCT source ORDER BY source) AS sources
    FROM fixes
    GROUP BY patch_key
)
SELECT
    p.patch_key,
    p.kb,
    CASE
        WHEN p.kb IS NOT NULL THEN
            concat_ws(' ', strftime(p.release_month, '%Y-%m'), coalesce(p.first_sub_type, 'Security Update'),
                      'for', p.first_product,
                      CASE WHEN p.product_count > 1 THEN format('and {} more', p.product_count - 1) END,
                      '(KB' || p.kb || ')')
        ELSE concat_ws(' ', coalesce(p.package, p.first_product), p.first_fix_version)
    END AS title,
    'Security' AS classification,
    p.sub_types,
    p.max_severity,
    p.max_cvss,
    p.released_at,
    p.release_month,
    p.restart_required,
    p.exploited,
    p.publicly_disclosed,
    coalesce(c.in_kev, false) AS in_kev,
    c.kev_due_date,
    c.max_epss,
    p.cve_count,
    p.cves,
    p.product_ids,
    p.products,
    p.fixed_builds,
    list_sort(list_distinct(p.all_supersedes)) AS supersedes,
    coalesce(s.superseded_by, []::VARCHAR[]) AS superseded_by,
    l.lineage_id AS fix_lineage_id,
    p.document_ids,
    p.remediation_url,
    p.sources
FROM per_patch AS p
LEFT JOIN cves AS c USING (patch_key)
LEFT JOIN superseded_by AS s ON s.kb = p.kb
LEFT JOIN marts.patch_fix_lineage AS l ON l.kb = p.kb
-- Nothing released after the evaluation date: a past-date run must not know later patches.
WHERE p.released_at IS NULL OR CAST(p.released_at AS DATE) <= CAST($as_of AS DATE)
ORDER BY p.patch_key
