-- @table Time to patch and SLA attainment from marts.remediation_episodes (NIST SP 800-40r4 3.6 matrix, SI-2(3)): mean, median and 90th percentile of days_open over episodes closed by an installation, and the share of decided episodes within each framework's SLA. Grains: overall; matrix (severity x machine criticality, every episode); month (the UTC month an episode closed, closed episodes only, so a bad month is not hidden in a yearly figure). An episode counts for a framework's share once decided: closed (met when closed on or before the due date) or still open after the due date (missed); open episodes not yet due are left out.
-- @column grain: overall, matrix or month.
-- @column severity: Patch severity (matrix grain), else NULL.
-- @column criticality: Machine criticality, '(none)' when untagged (matrix grain), else NULL.
-- @column month: First day of the closing month (month grain), else NULL.
-- @column episodes: Episodes in the row.
-- @column closed_by_install: Episodes closed by an installation.
-- @column still_open: Episodes open on $as_of.
-- @column mean_days_to_patch: Mean days_open of the episodes closed by an installation.
-- @column median_days_to_patch: Median of the same.
-- @column p90_days_to_patch: 90th percentile (continuous) of the same.
-- @column decided_internal: Episodes decided under the internal policy.
-- @column within_sla_internal: Share of those met, 0-1 (NULL when none decided).
-- @column decided_pci: Episodes decided under PCI DSS 6.3.3.
-- @column within_sla_pci: Share met, 0-1.
-- @column decided_fedramp: Episodes decided under FedRAMP.
-- @column within_sla_fedramp: Share met, 0-1.
-- @column decided_kev: Episodes decided under the KEV due date.
-- @column within_sla_kev: Share met, 0-1.
-- @column decided_bod2604: Episodes decided under CISA BOD 26-04.
-- @column within_sla_bod2604: Share met, 0-1.
-- @column as_of: Evaluation date.
WITH
episodes AS (
    SELECT *, coalesce(criticality, '(none)') AS crit, date_trunc('month', closed_at::DATE)::DATE AS closed_month
    FROM marts.remediation_episodes
),
rows_in AS (
    SELECT 'overall' AS grain, NULL::VARCHAR AS severity, NULL::VARCHAR AS criticality, NULL::DATE AS month, e.*
    FROM episodes AS e
    UNION ALL
    SELECT 'matrix', e.severity, e.crit, NULL::DATE, e.*
    FROM episodes AS e
    UNION ALL
    SELECT 'month', NULL, NULL, e.closed_month, e.*
    FROM episodes AS e
    WHERE e.closed_at IS NOT NULL
)
SELECT
    grain,
    severity,
    criticality,
    month,
    count(*)::INTEGER AS episodes,
    count(*) FILTER (WHERE close_reason = 'installed')::INTEGER AS closed_by_install,
    count(*) FILTER (WHERE closed_at IS NULL)::INTEGER AS still_open,
    round(avg(days_open) FILTER (WHERE close_reason = 'installed'), 3)::DOUBLE AS mean_days_to_patch,
    round(quantile_cont(days_open, 0.5) FILTER (WHERE close_reason = 'installed'), 3)::DOUBLE AS median_days_to_patch,
    round(quantile_cont(days_open, 0.9) FILTER (WHERE close_reason = 'installed'), 3)::DOUBLE AS p90_days_to_patch,
    count(met_sla_internal)::INTEGER AS decided_internal,
    round(avg(met_sla_internal::INTEGER), 6)::DOUBLE AS within_sla_internal,
    count(met_sla_pci)::INTEGER AS decided_pci,
    round(avg(met_sla_pci::INTEGER), 6)::DOUBLE AS within_sla_pci,
    count(met_sla_fedramp)::INTEGER AS decided_fedramp,
    round(avg(met_sla_fedramp::INTEGER), 6)::DOUBLE AS within_sla_fedramp,
    count(met_sla_kev)::INTEGER AS decided_kev,
    round(avg(met_sla_kev::INTEGER), 6)::DOUBLE AS within_sla_kev,
    count(met_sla_bod2604)::INTEGER AS decided_bod2604,
    round(avg(met_sla_bod2604::INTEGER), 6)::DOUBLE AS within_sla_bod2604,
    CAST($as_of AS DATE) AS as_of
FROM rows_in
GROUP BY grain, severity, criticality, month
ORDER BY grain, severity NULLS FIRST, criticality NULLS FIRST, month NULLS FIRST
