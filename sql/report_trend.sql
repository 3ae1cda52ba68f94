-- @report Compliance trend of the evidence pack: per UTC day up to $as_of, the compliance share of each patch severity (marts.compliance_daily, grain severity) and, apart, the machines whose assessment was stale at the end of that day (no successful assessment in staging.assessment_runs within $stale_after_days days, as marts.vm_inventory judges the evaluation date).
WITH
days AS (
    SELECT DISTINCT day FROM marts.compliance_daily WHERE day <= $as_of
),
grid AS (
    SELECT v.vm_id, d.day, (d.day + 1)::TIMESTAMPTZ AS day_end
    FROM marts.vm_inventory AS v CROSS JOIN days AS d
),
assessed AS (
    SELECT vm_id, assessed_at FROM staging.assessment_runs WHERE succeeded
),
last_assessed AS (
    SELECT g.day, a.assessed_at
    FROM grid AS g ASOF LEFT JOIN assessed AS a ON g.vm_id = a.vm_id AND g.day_end > a.assessed_at
),
stale AS (
    SELECT day, count(*) FILTER (
        WHERE assessed_at IS NULL OR date_diff('day', assessed_at::DATE, day) > CAST($stale_after_days AS INTEGER)
    ) AS stale_machines
    FROM last_assessed GROUP BY day
)
SELECT d.day, c.severity, c.compliance_share, c.applicable_pairs, s.stale_machines
FROM days AS d
LEFT JOIN marts.compliance_daily AS c ON c.day = d.day AND c.grain = 'severity'
LEFT JOIN stale AS s ON s.day = d.day
ORDER BY d.day, c.severity
