-- @report Time to patch per severity for the evidence pack: remediation episodes (marts.remediation_episodes) closed by an installation, their count, median and 90th percentile (continuous) of days_open, as marts.time_to_patch computes them per grain.
SELECT severity,
       count(*) AS closed_by_install,
       median(days_open) AS median_days,
       quantile_cont(days_open, 0.9) AS p90_days
FROM marts.remediation_episodes
WHERE close_reason = 'installed'
GROUP BY severity
ORDER BY CASE severity WHEN 'Critical' THEN 0 WHEN 'Important' THEN 1 WHEN 'Moderate' THEN 2 WHEN 'Low' THEN 3 ELSE 4 END
