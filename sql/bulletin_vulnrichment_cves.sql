-- @table The CVEs a live Vulnrichment fetch asks CISA's repository about: every CVE id named by an MSRC vulnerability or an OSV advisory already ingested, and every CVE of the newest KEV snapshot.
-- @column cve: CVE id, upper case.
SELECT DISTINCT upper(cve) AS cve
FROM (
    SELECT cve FROM raw.msrc_vulnerabilities
    UNION ALL
    SELECT unnest(cves) FROM raw.osv_advisories
    UNION ALL
    SELECT cve FROM raw.kev_vulnerabilities
    WHERE date_released = (SELECT max(k.date_released) FROM raw.kev_vulnerabilities AS k)
)
WHERE regexp_full_match(upper(cve), 'CVE-\d{4}-\d{4,}')
ORDER BY cve
