-- @table The severity each patch is counted under in marts.compliance_daily and marts.remediation_episodes: the catalog's highest MSRC severity, else the newest severity an observation gives, else from the newest classification (Critical -> Critical, Security -> Important, other -> Low). One row per patch key ever observed. A table of its own so that the daily trend can tell when it must be recomputed in full.
-- @column patch_key: KB digits, or <package>_<version>.
-- @column severity: Critical, Important, Moderate or Low.
SELECT
    e.patch_key,
    any_value(coalesce(
        c.max_severity,
        s.msrc_severity,
        CASE s.classification WHEN 'Critical' THEN 'Critical' WHEN 'Security' THEN 'Important' ELSE 'Low' END
    )) AS severity
FROM (SELECT DISTINCT patch_key FROM marts.vm_patch_history) AS e
LEFT JOIN marts.patch_catalog AS c ON c.patch_key = e.patch_key
LEFT JOIN (
    SELECT patch_key,
           arg_max(msrc_severity, observed_at) FILTER (WHERE msrc_severity IS NOT NULL) AS msrc_severity,
           arg_max(classification, observed_at) FILTER (WHERE classification IS NOT NULL) AS classification
    FROM marts.vm_patch_history
    GROUP BY patch_key
) AS s ON s.patch_key = e.patch_key
GROUP BY e.patch_key
ORDER BY e.patch_key
