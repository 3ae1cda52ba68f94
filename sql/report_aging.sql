-- @report Gap aging of the evidence pack: open gaps of marts.compliance_gaps (stale_assessment excluded: its age is the machine's, not a patch's) by days since first seen, within SLA and overdue.
WITH
buckets(bucket, low, high) AS (
    VALUES ('0-7 days', 0, 7), ('8-30 days', 8, 30), ('31-60 days', 31, 60), ('61-90 days', 61, 90), ('over 90 days', 91, NULL)
)
SELECT b.bucket,
       count(g.gap_id) FILTER (WHERE coalesce(g.days_overdue, 0) = 0) AS within_sla,
       count(g.gap_id) FILTER (WHERE g.days_overdue > 0) AS overdue
FROM buckets AS b
LEFT JOIN marts.compliance_gaps AS g
       ON g.gap_type <> 'stale_assessment' AND g.age_days >= b.low AND (b.high IS NULL OR g.age_days <= b.high)
GROUP BY b.bucket, b.low
ORDER BY b.low
