-- @summary OSV advisory fixes normalized: advisory x CVE x ecosystem x package x fixed version, with the <package>_<version> patch key and an MSRC-scale severity.
-- @group stage3_notification_channels
-- @depends raw.osv_advisories, raw.osv_affected
-- @table OSV advisory fixes for non-Microsoft software, normalized: one row per advisory, CVE, affected package (the source package and, for Ubuntu, each binary package built from it) and fixed version. Withdrawn advisories are left out. An advisory with no CVE keeps one row with its own id as cve; an affected package with no fix keeps one row with fixed_version and patch_key NULL.
-- @table Severity is on the MSRC scale so that the catalog compares like with like: the distribution's own rating when the advisory gives one (Ubuntu priority or database_specific.severity: critical -> Critical, high -> Important, medium/moderate -> Moderate, low/negligible -> Low), else from the CVSS base score (>= 9 Critical, >= 7 Important, >= 4 Moderate, > 0 Low, 0 None).
-- @column advisory_id: OSV id (USN-6986-1, DSA-5764-1, UBUNTU-CVE-2024-6119, GHSA-...).
-- @column cve: CVE id (upper case) named by the advisory in id, aliases, upstream or related; the advisory id when it names none.
-- @column ecosystem: OSV ecosystem as given (Ubuntu:22.04:LTS, Debian:12, PyPI, ...).
-- @column distribution: First part of the ecosystem (Ubuntu, Debian, PyPI, ...).
-- @column distribution_release: Release number in the ecosystem (22.04, 12), NULL when none.
-- @column source_package: Package named by the advisory (the source package for Linux distributions).
-- @column package: Package the patch is named after: the source package, or a binary package built from it (Ubuntu ecosystem_specific.binaries).
-- @column package_kind: source or binary.
-- @column range_type: OSV range type (ECOSYSTEM, SEMVER, GIT).
-- @column introduced: Version the vulnerable range starts at (0 = all earlier versions).
-- @column fixed_version: Version that fixes it, NULL when not fixed (or for a git commit range).
-- @column patch_key: <package>_<fixed_version> (the way Azure names a Linux package update); NULL when there is no fixed version or the range is a git range.
-- @column severity: Critical, Important, Moderate, Low, None (MSRC scale, see the table comment) or NULL.
-- @column severity_rank: 4 Critical, 3 Important, 2 Moderate, 1 Low, 0 None, NULL unknown.
-- @column severity_source: vendor (the distribution's rating) or cvss.
-- @column vendor_severity: The distribution's rating as given (Ubuntu priority, database_specific.severity).
-- @column cvss_base: CVSS base score computed from the advisory's vector (v3 preferred, then v4, then v2).
-- @column cvss_vector: CVSS vector as given.
-- @column summary: Advisory summary.
-- @column published_at: When the advisory was published (UTC).
-- @column modified_at: When the advisory was last modified (UTC).
-- @column advisory_url: Advisory web page (first reference of type ADVISORY, else WEB).
-- @column source_file: Estate file the advisory came from.
WITH
advisories AS (
    SELECT * FROM raw.osv_advisories WHERE withdrawn_at IS NULL
),
rated AS (
    SELECT
        a.*,
        CASE lower(trim(a.vendor_severity))
            WHEN 'critical' THEN 'Critical'
            WHEN 'high' THEN 'Important'
            WHEN 'important' THEN 'Important'
            WHEN 'medium' THEN 'Moderate'
            WHEN 'moderate' THEN 'Moderate'
            WHEN 'low' THEN 'Low'
            WHEN 'negligible' THEN 'Low'
        END AS vendor_rating,
        CASE
            WHEN a.cvss_base >= 9 THEN 'Critical'
            WHEN a.cvss_base >= 7 THEN 'Important'
            WHEN a.cvss_base >= 4 THEN 'Moderate'
            WHEN a.cvss_base > 0 THEN 'Low'
            WHEN a.cvss_base = 0 THEN 'None'
        END AS cvss_rating
    FROM advisories AS a
),
per_cve AS (
    SELECT r.*, c.cve
    FROM rated AS r
    CROSS JOIN unnest(CASE WHEN len(r.cves) > 0 THEN r.cves ELSE [r.advisory_id] END) AS c(cve)
)
SELECT DISTINCT
    p.advisory_id,
    p.cve,
    f.ecosystem,
    split_part(f.ecosystem, ':', 1) AS distribution,
    nullif(regexp_extract(f.ecosystem, ':(\d+(?:\.\d+)*)(?::|$)', 1), '') AS distribution_release,
    f.source_package,
    f.package,
    f.package_kind,
    f.range_type,
    f.introduced,
    f.fixed_version,
    CASE WHEN f.fixed_version IS NOT NULL AND coalesce(upper(f.range_type), '') <> 'GIT'
         THEN f.package || '_' || f.fixed_version END AS patch_key,
    coalesce(p.vendor_rating, p.cvss_rating) AS severity,
    CASE coalesce(p.vendor_rating, p.cvss_rating)
        WHEN 'Critical' THEN 4 WHEN 'Important' THEN 3 WHEN 'Moderate' THEN 2
        WHEN 'Low' THEN 1 WHEN 'None' THEN 0 END AS severity_rank,
    CASE WHEN p.vendor_rating IS NOT NULL THEN 'vendor' WHEN p.cvss_rating IS NOT NULL THEN 'cvss' END
        AS severity_source,
    p.vendor_severity,
    p.cvss_base,
    p.cvss_vector,
    p.summary,
    p.published_at,
    p.modified_at,
    p.advisory_url,
    p.source_file
FROM per_cve AS p
JOIN raw.osv_affected AS f USING (advisory_id)
ORDER BY p.advisory_id, p.cve, f.ecosystem, f.package, f.fixed_version NULLS LAST, f.introduced
