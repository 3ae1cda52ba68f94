-- @report Compliance trend of the evidence pack: per UTC day up to $as_of, the compliance share of each patch severity (marts.compliance_daily, grain severity) and, apart, the machines whose assessment was stale at the end of that day (no successful assessment in staging.assessment_runs within $stale_after_days days, as marts.vm_inventory judges the evaluation date).
WITH
days AS (
    SELECT DISTINCT day FROM marts.compliance_daily WHERE day <= $as_of
),
-- The machines of the inventory, numbered (so that the counts below group integers, not ids).
machines AS (
    SELECT vm_id, row_number() OVER () AS machine FROM marts.vm_inventory
),
-- The UTC days each of them had a successful assessment.
listed AS (
    SELECT DISTINCT m.machine, a.assessed_at::DATE AS listed_day
    FROM staging.assessment_runs AS a
    JOIN machines AS m ON m.vm_id = a.vm_id
    WHERE a.succeeded
),
-- A machine is current at the end of a day when one of those days is at most $stale_after_days
-- before it (its newest assessment up to then is that recent); the others are stale.
current_machines AS (
    SELECT day, count(DISTINCT machine) AS machines
    FROM (
        SELECT l.machine,
               CAST(unnest(generate_series(l.listed_day, l.listed_day + CAST($stale_after_days AS INTEGER),
                                           INTERVAL 1 DAY)) AS DATE) AS day
        FROM listed AS l
    )
    GROUP BY day
),
stale AS (
    SELECT d.day, (SELECT count(*) FROM machines) - coalesce(c.machines, 0) AS stale_machines
    FROM days AS d
    LEFT JOIN current_machines AS c ON c.day = d.day
)
SELECT d.day, c.severity, c.compliance_share, c.applicable_pairs, s.stale_machines
FROM days AS d
LEFT JOIN marts.compliance_daily AS c ON c.day = d.day AND c.grain = 'severity'
LEFT JOIN stale AS s ON s.day = d.day
ORDER BY d.day, c.severity
