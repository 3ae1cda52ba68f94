-- @summary MSRC fixes normalized and joined (document, product, CVE exploit status), with patch_key and a comparable fixed build: the input of every patch mart.
-- @group stage3_notification_channels
-- @depends raw.msrc_documents, raw.msrc_fixes, raw.msrc_products, raw.msrc_vulnerabilities
-- @table MSRC fixes, normalized: one row per CVE, affected product and vendor-fix remediation of every ingested month document (an affected product without a vendor fix keeps one row with the fix columns NULL). Joined to the document, product and CVE, with the patch key and a comparable fixed build.
-- @column document_id: MSRC document id (2024-Jan, 2017-May-B, or a Mariner pseudo-month).
-- @column document_kind: security_update, or mariner_release_notes for the pseudo-months that carry CBL-Mariner data (their ids are not release months).
-- @column release_month: First day of the document's release month; NULL for Mariner pseudo-months.
-- @column released_at: Initial release of the document (UTC); NULL for Mariner pseudo-months, whose dates are not release dates.
-- @column cve: CVE (or ADV advisory) id, upper case.
-- @column vulnerability_title: MSRC title of the CVE (NULL for many third-party CVEs).
-- @column publicly_disclosed: MSRC exploit status "Publicly Disclosed" (NULL when not stated).
-- @column exploited: MSRC exploit status "Exploited" (NULL when not stated).
-- @column product_id: MSRC ProductID, a string (digits, or <package>-<platform> for Azure Linux / CBL-Mariner).
-- @column product: Product name.
-- @column product_family: Product family branch of the product tree (Windows, Browser, ...), when the product sits in a branch.
-- @column severity: MSRC severity for this product: Critical, Important, Moderate, Low, None, or NULL when MSRC gives none (third-party CVEs).
-- @column severity_rank: 4 Critical, 3 Important, 2 Moderate, 1 Low, 0 None, NULL unknown.
-- @column impact: MSRC impact for this product (Remote Code Execution, Elevation of Privilege, ...).
-- @column cvss_base: CVSS base score for this product.
-- @column cvss_temporal: CVSS temporal score for this product.
-- @column cvss_vector: CVSS vector for this product.
-- @column kb: KB digits of the vendor fix, NULL when the fix is not a KB (Linux package, Edge, Office Click-to-Run, ...).
-- @column patch_key: The patch: KB digits; else <package>_<fix_version> for Azure Linux / Mariner packages; else <product slug>_<fix version>, or <product slug>_<document id> when there is no version. NULL when the product has no vendor fix.
-- @column fix_version: Version the fix brings: the fixed build when it is a version, else the version in an Azure Linux / Mariner package product name.
-- @column package: Linux package name for Azure Linux / Mariner fixes (from the composite product name or the remediation description).
-- @column fix_description: Remediation description as MSRC gives it (KB digits, package name, "Release Notes", "Click to Run").
-- @column sub_type: Remediation subtype (Security Update, Monthly Rollup, Security Only, SecurityHotpatchUpdate, ...).
-- @column supersedes: KB digits this fix supersedes for this product (MSRC "Supercedence", split on ; , and spaces).
-- @column restart_required: Yes, No, Maybe or NULL.
-- @column fixed_build: Fixed build as MSRC gives it (a version, a URL, several builds joined by &, or -).
-- @column fixed_build_parts: The fixed build as integers when it is a dotted numeric version of 2 to 4 parts (10.0.20348.2227 -> [10,0,20348,2227]); lists compare element by element.
-- @column remediation_url: Download or release-notes URL of the fix.
-- @column source_file: Estate file the document came from.
SELECT
    f.document_id,
    d.document_kind,
    d.release_month,
    CASE WHEN d.document_kind = 'mariner_release_notes' THEN NULL ELSE d.initial_release_at END AS released_at,
    f.cve,
    v.title AS vulnerability_title,
    v.publicly_disclosed,
    v.exploited,
    f.product_id,
    p.product_name AS product,
    p.product_family,
    s.severity,
    CASE s.severity WHEN 'Critical' THEN 4 WHEN 'Important' THEN 3 WHEN 'Moderate' THEN 2
                    WHEN 'Low' THEN 1 WHEN 'None' THEN 0 END AS severity_rank,
    f.impact,
    f.cvss_base,
    f.cvss_temporal,
    f.cvss_vector,
    f.kb,
    CASE
        WHEN f.kb IS NOT NULL THEN f.kb
        WHEN f.remediation_type IS NULL THEN NULL
        WHEN k.package IS NOT NULL AND k.fix_version IS NOT NULL THEN k.package || '_' || k.fix_version
        ELSE k.product_slug || '_' || coalesce(k.fix_version, lower(f.document_id))
    END AS patch_key,
    k.package,
    k.fix_version,
    f.fix_description,
    f.sub_type,
    f.supersedes,
    f.restart_required,
    f.fixed_build,
    CASE WHEN regexp_full_match(coalesce(f.fixed_build, ''), '\d+(\.\d+){1,3}')
         THEN list_transform(string_split(f.fixed_build, '.'), lambda x: CAST(x AS BIGINT)) END AS fixed_build_parts,
    f.remediation_url,
    f.source_file
FROM raw.msrc_fixes AS f
JOIN raw.msrc_documents AS d USING (document_id)
LEFT JOIN raw.msrc_products AS p USING (document_id, product_id)
LEFT JOIN raw.msrc_vulnerabilities AS v USING (document_id, cve)
CROSS JOIN LATERAL (
    SELECT CASE lower(trim(f.severity))
        WHEN 'critical' THEN 'Critical' WHEN 'important' THEN 'Important'
        WHEN 'moderate' THEN 'Moderate' WHEN 'low' THEN 'Low' WHEN 'none' THEN 'None'
    END AS severity
) AS s
CROSS JOIN LATERAL (
    SELECT
        -- Azure Linux / Mariner packages are products like "cbl2 kernel 5.15.153.1-1 on CBL Mariner 2.0".
        coalesce(
            nullif(regexp_extract(p.product_name, '^(?:cbl|azl|cm)\d+ (\S+) \S+ on ', 1), ''),
            CASE WHEN f.kb IS NULL
                  AND f.fix_description NOT IN ('Release Notes', 'CBL-Mariner Releases', 'Click to Run')
                  AND regexp_full_match(coalesce(f.fix_description, ''), '[A-Za-z0-9][A-Za-z0-9._+-]*')
                 THEN lower(f.fix_description) END
        ) AS package,
        -- The fixed build when it is a version, else the version in a package product's name.
        coalesce(
            CASE WHEN regexp_full_match(coalesce(f.fixed_build, ''), '[0-9][0-9A-Za-z.+~:_-]*') THEN f.fixed_build END,
            nullif(regexp_extract(p.product_name, '^(?:cbl|azl|cm)\d+ \S+ (\S+) on ', 1), '')
        ) AS fix_version,
        trim(regexp_replace(lower(coalesce(p.product_name, f.product_id)), '[^a-z0-9.]+', '-', 'g'), '-') AS product_slug
) AS k
ORDER BY f.document_id, f.cve, f.product_id, patch_key
