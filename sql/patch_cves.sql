-- @summary Patch x CVE x product (MSRC and OSV) with severity and CVSS, exploit status, KEV, EPSS and CISA Vulnrichment SSVC decision points as of the evaluation date.
-- @group stage3_notification_channels
-- @depends staging.msrc_fixes, staging.osv_fixes, raw.kev_vulnerabilities, raw.epss_scores
-- @depends raw.vulnrichment_ssvc, staging.patch_observations
-- @table The CVEs each patch fixes, per product (patch x CVE x product), from MSRC (Microsoft products, Azure Linux) and OSV advisories (Linux distribution packages, other non-Microsoft software), with MSRC-scale severity, CVSS and exploit status, CISA KEV and FIRST EPSS as of the evaluation date, and the CVE's CISA Vulnrichment SSVC decision points. KEV: the newest catalog snapshot released on or before $as_of (else the oldest one held), entries added on or before $as_of. EPSS: the newest daily file scored on or before $as_of (else the oldest one held). Patches released after $as_of are left out, as in marts.patch_catalog.
-- @column patch_key: The patch (KB digits or <package>_<version>).
-- @column kb: KB digits, NULL for non-KB fixes.
-- @column cve: CVE id, upper case.
-- @column product_id: MSRC product id, or the OSV ecosystem (Ubuntu:22.04:LTS) for OSV fixes.
-- @column product: Product name (for OSV: <package> on <ecosystem>).
-- @column document_id: MSRC document that lists the fix, or the OSV advisory id.
-- @column severity: MSRC severity for this product (Critical, Important, Moderate, Low, None or NULL); for OSV the distribution's rating or the CVSS band on the same scale (staging.osv_fixes).
-- @column impact: MSRC impact for this product (NULL for OSV).
-- @column cvss_base: CVSS base score for this product.
-- @column cvss_vector: CVSS vector for this product.
-- @column exploited: MSRC reports the CVE exploited (OSV does not say: false).
-- @column publicly_disclosed: MSRC reports the CVE publicly disclosed.
-- @column in_kev: The CVE is in the CISA KEV catalog as of the evaluation date.
-- @column kev_date_added: Date CISA added the CVE to KEV.
-- @column kev_due_date: CISA remediation due date.
-- @column kev_ransomware: CISA knownRansomwareCampaignUse (Known or Unknown).
-- @column kev_catalog_version: KEV catalog snapshot used.
-- @column epss: EPSS probability of exploitation in the next 30 days (0-1).
-- @column epss_percentile: EPSS percentile (0-1).
-- @column epss_score_date: Date of the EPSS scores used.
-- @column source: Bulletin the row comes from: msrc or osv.
-- @column ssvc_exploitation: CISA Vulnrichment SSVC Exploitation for the CVE (none, poc, active); NULL without a Vulnrichment decision made on or before the evaluation date.
-- @column ssvc_automatable: CISA Vulnrichment SSVC Automatable (true = yes); NULL as above.
-- @column ssvc_technical_impact: CISA Vulnrichment SSVC Technical Impact (partial, total); NULL as above.
WITH
fixes AS (
    SELECT
        patch_key, cve, product_id,
        any_value(kb) AS kb,
        any_value(product) AS product,
        min(document_id) AS document_id,
        arg_max(severity, coalesce(severity_rank, -1)) AS severity,
        max(impact) AS impact,
        max(cvss_base) AS cvss_base,
        arg_max(cvss_vector, coalesce(cvss_base, -1)) AS cvss_vector,
        bool_or(exploited) AS exploited,
        bool_or(publicly_disclosed) AS publicly_disclosed
    FROM staging.msrc_fixes
    WHERE patch_key IS NOT NULL
    GROUP BY patch_key, cve, product_id
),
osv_fixes AS (
    SELECT
        patch_key, cve, ecosystem AS product_id,
        NULL::VARCHAR AS kb,
        any_value(package || ' on ' || ecosystem) AS product,
        min(advisory_id) AS document_id,
        arg_max(severity, coalesce(severity_rank, -1)) AS severity,
        NULL::VARCHAR AS impact,
        max(cvss_base) AS cvss_base,
        arg_max(cvss_vector, coalesce(cvss_base, -1)) AS cvss_vector,
        NULL::BOOLEAN AS exploited,
        NULL::BOOLEAN AS publicly_disclosed
    FROM staging.osv_fixes
    WHERE patch_key IS NOT NULL
    GROUP BY patch_key, cve, ecosystem
),
all_fixes AS (
    SELECT *, 'msrc' AS source FROM fixes
    UNION ALL BY NAME
    SELECT *, 'osv' AS source FROM osv_fixes
),
-- Patches released after the evaluation date (their earliest MSRC release or OSV publication)
-- were not known then.
unreleased AS (
    SELECT patch_key FROM (
        SELECT patch_key, released_at FROM staging.msrc_fixes
        UNION ALL
        SELECT patch_key, coalesce(published_at, modified_at) FROM staging.osv_fixes
    )
    WHERE patch_key IS NOT NULL
    GROUP BY patch_key
    HAVING CAST(min(released_at) AS DATE) > CAST($as_of AS DATE)
),
kev_snapshot AS (
    SELECT coalesce(
        (SELECT max(date_released) FROM raw.kev_vulnerabilities WHERE CAST(date_released AS DATE) <= $as_of),
        (SELECT min(date_released) FROM raw.kev_vulnerabilities)
    ) AS date_released
),
kev AS (
    SELECT k.cve, min(k.date_added) AS date_added, min(k.due_date) AS due_date,
           max(k.known_ransomware_campaign_use) AS ransomware, max(k.catalog_version) AS catalog_version
    FROM raw.kev_vulnerabilities AS k
    JOIN kev_snapshot AS s ON s.date_released = k.date_released
    WHERE k.date_added <= $as_of
    GROUP BY k.cve
),
epss_snapshot AS (
    SELECT coalesce(
        (SELECT max(score_date) FROM raw.epss_scores WHERE score_date <= $as_of),
        (SELECT min(score_date) FROM raw.epss_scores)
    ) AS score_date
),
epss AS (
    SELECT e.cve, max(e.epss) AS epss, max(e.percentile) AS percentile, any_value(e.score_date) AS score_date
    FROM raw.epss_scores AS e
    JOIN epss_snapshot AS s ON s.score_date = e.score_date
    GROUP BY e.cve
),
-- Vulnrichment keeps only the current record: a decision dated after $as_of is not used.
ssvc AS (
    SELECT cve, exploitation, automatable, technical_impact
    FROM raw.vulnrichment_ssvc
    WHERE (automatable IS NOT NULL OR technical_impact IS NOT NULL)
      AND CAST(coalesce(ssvc_timestamp, adp_updated_at, record_updated_at) AS DATE) <= $as_of
)
SELECT
    f.patch_key,
    f.kb,
    f.cve,
    f.product_id,
    f.product,
    f.document_id,
    f.severity,
    f.impact,
    f.cvss_base,
    f.cvss_vector,
    coalesce(f.exploited, false) AS exploited,
    coalesce(f.publicly_disclosed, false) AS publicly_disclosed,
    k.cve IS NOT NULL AS in_kev,
    k.date_added AS kev_date_added,
    k.due_date AS kev_due_date,
    k.ransomware AS kev_ransomware,
    k.catalog_version AS kev_catalog_version,
    e.epss,
    e.percentile AS epss_percentile,
    e.score_date AS epss_score_date,
    f.source,
    v.exploitation AS ssvc_exploitation,
    v.automatable = 'yes' AS ssvc_automatable,
    v.technical_impact AS ssvc_technical_impact
FROM all_fixes AS f
LEFT JOIN kev AS k ON k.cve = f.cve
LEFT JOIN epss AS e ON e.cve = f.cve
LEFT JOIN ssvc AS v ON v.cve = f.cve
WHERE f.patch_key NOT IN (SELECT patch_key FROM unreleased)
ORDER BY f.patch_key, f.cve, f.product_id, f.source
