-- @table The patches to notify in this run: catalog patches that apply to at least one machine (staging.patch_applicability) and either were released in the $lookback_days days up to the evaluation date (never after it) and never notified before (reason new), or were notified before any of their CVEs entered CISA KEV and are in KEV now (reason entered_kev, whatever their release date). One row per patch, most urgent first.
-- @column patch_key: The patch (KB digits or <package>_<version>).
-- @column kb: KB digits, NULL for non-KB patches.
-- @column title: Catalog title.
-- @column sources: Bulletins that list it (msrc, osv).
-- @column severity: Highest severity on the MSRC scale (marts.patch_catalog max_severity).
-- @column max_cvss: Highest CVSS base score.
-- @column exploited: MSRC reports one of its CVEs exploited.
-- @column in_kev: One of its CVEs is in CISA KEV as of the evaluation date.
-- @column kev_due_date: Earliest KEV due date among its CVEs.
-- @column max_epss: Highest EPSS probability among its CVEs.
-- @column cves: The CVEs it fixes.
-- @column products: Products or packages it fixes that were found in the estate.
-- @column affected_machines: Number of machines it applies to.
-- @column released_at: Release of the patch (catalog released_at).
-- @column remediation_url: Download, release-notes or advisory URL.
-- @column reason: new (first notice of the patch) or entered_kev (notified again: one of its CVEs entered KEV after its earlier notice).
WITH
notified AS (
    SELECT patch_key, bool_or(in_kev) AS kev_notified
    FROM ledger.notifications_sent
    GROUP BY patch_key
),
-- The catalog's patches this run may notify, before their machines are counted: only theirs are.
chosen AS (
    SELECT c.*, CASE WHEN n.patch_key IS NULL THEN 'new' ELSE 'entered_kev' END AS reason
    FROM marts.patch_catalog AS c
    LEFT JOIN notified AS n USING (patch_key)
    WHERE (n.patch_key IS NULL
           AND c.released_at IS NOT NULL
           AND CAST(c.released_at AS DATE) >= CAST($as_of AS DATE) - CAST($lookback_days AS INTEGER)
           -- nothing released after the evaluation date may be notified for it
           AND CAST(c.released_at AS DATE) <= CAST($as_of AS DATE))
       OR (n.patch_key IS NOT NULL AND c.in_kev AND NOT n.kev_notified)
),
applicable AS (
    SELECT
        patch_key,
        count(DISTINCT vm_id) AS affected_machines,
        list(DISTINCT matched_product ORDER BY matched_product) AS products
    FROM staging.patch_applicability
    WHERE patch_key IN (SELECT patch_key FROM chosen)
    GROUP BY patch_key
)
SELECT
    c.patch_key,
    c.kb,
    c.title,
    c.sources,
    c.max_severity AS severity,
    c.max_cvss,
    c.exploited,
    c.in_kev,
    c.kev_due_date,
    c.max_epss,
    c.cves,
    a.products,
    a.affected_machines,
    c.released_at,
    c.remediation_url,
    c.reason
FROM chosen AS c
JOIN applicable AS a USING (patch_key)
ORDER BY
    c.in_kev DESC, c.exploited DESC,
    CASE c.max_severity WHEN 'Critical' THEN 4 WHEN 'Important' THEN 3 WHEN 'Moderate' THEN 2
                        WHEN 'Low' THEN 1 ELSE 0 END DESC,
    a.affected_machines DESC, c.patch_key
