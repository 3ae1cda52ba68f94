-- @summary Baseline compliance per category, in distribution priority order.
-- @group stage2_vm_baselining
-- @depends marts.baseline_drift, marts.vm_inventory, staging.asset_categories
-- @table Baseline compliance per asset category as of $as_of, in distribution priority order (critical categories first).
-- A VM is compliant when none of its requirements drifted and it has at least one assessable
-- requirement; VMs of a category without a baseline count as without_baseline.
-- @column asset_category: Category id (uncategorized and unknown categories included).
-- @column criticality: The category's criticality, NULL when the category is not in the register.
-- @column distribution_priority: 1 (critical) to 4 (low), 5 for categories not in the register; patches go to lower numbers first.
-- @column vms: VMs in the category.
-- @column requirements: Baseline requirements in effect for the category.
-- @column vms_compliant: VMs with no drift and at least one assessable requirement.
-- @column vms_drifted: VMs with at least one drifted requirement.
-- @column vms_without_baseline: VMs whose category has no requirement in effect.
-- @column pct_compliant: vms_compliant / vms x 100, rounded to 1 decimal; NULL for no VMs.
-- @column missing_patches: VM x patch requirements missing.
-- @column pending_reboots: VM x patch requirements installed but pending reboot.
-- @column below_min_build: VMs below the baseline's minimum OS build.
-- @column not_assessable: VM x requirement pairs without data.
WITH vms AS (
    SELECT coalesce(asset_category, 'uncategorized') AS asset_category, vm_id
    FROM marts.vm_inventory
),
per_vm AS (
    SELECT vm_id, bool_or(drifted) AS drifted,
           count(*) FILTER (WHERE status NOT IN ('not_assessable', 'not_applicable')) AS assessable
    FROM marts.baseline_drift
    GROUP BY vm_id
),
drift_counts AS (
    SELECT asset_category,
           count(*) FILTER (WHERE status = 'missing_patch') AS missing_patches,
           count(*) FILTER (WHERE status = 'pending_reboot') AS pending_reboots,
           count(DISTINCT vm_id) FILTER (WHERE status = 'below_min_build') AS below_min_build,
           count(*) FILTER (WHERE status = 'not_assessable') AS not_assessable
    FROM marts.baseline_drift
    GROUP BY asset_category
),
requirement_counts AS (
    SELECT category_id AS asset_category, count(*) AS requirements
    FROM staging.baselines
    WHERE effective_from IS NULL OR effective_from <= CAST($as_of AS DATE)
    GROUP BY category_id
),
per_category AS (
    SELECT v.asset_category,
           count(*) AS vms,
           count(*) FILTER (WHERE NOT p.drifted AND p.assessable > 0) AS vms_compliant,
           count(*) FILTER (WHERE p.drifted) AS vms_drifted,
           count(*) FILTER (WHERE p.vm_id IS NULL) AS vms_without_baseline
    FROM vms AS v LEFT JOIN per_vm AS p USING (vm_id)
    GROUP BY v.asset_category
)
SELECT c.asset_category, a.criticality,
       CAST(coalesce(a.distribution_priority, 5) AS INTEGER) AS distribution_priority,
       CAST(c.vms AS INTEGER) AS vms,
       CAST(coalesce(r.requirements, 0) AS INTEGER) AS requirements,
       CAST(c.vms_compliant AS INTEGER) AS vms_compliant,
       CAST(c.vms_drifted AS INTEGER) AS vms_drifted,
       CAST(c.vms_without_baseline AS INTEGER) AS vms_without_baseline,
       round(100.0 * c.vms_compliant / nullif(c.vms, 0), 1) AS pct_compliant,
       CAST(coalesce(d.missing_patches, 0) AS INTEGER) AS missing_patches,
       CAST(coalesce(d.pending_reboots, 0) AS INTEGER) AS pending_reboots,
       CAST(coalesce(d.below_min_build, 0) AS INTEGER) AS below_min_build,
       CAST(coalesce(d.not_assessable, 0) AS INTEGER) AS not_assessable
FROM per_category AS c
LEFT JOIN staging.asset_categories AS a ON a.category_id = c.asset_category
LEFT JOIN requirement_counts AS r USING (asset_category)
LEFT JOIN drift_counts AS d USING (asset_category)
ORDER BY distribution_priority, c.asset_category
