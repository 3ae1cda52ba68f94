-- @summary Each VM against its category's baseline: missing patches, OS build below the minimum, software not assessable.
-- @group stage2_vm_baselining
-- @depends marts.vm_inventory, marts.vm_patch_state, staging.asset_categories, staging.baselines
-- @table Drift of each VM from its asset category's baseline as of $as_of, one row per VM x requirement in effect.
-- A patch requirement reads the VM's latest state in marts.vm_patch_state (pending reboot is not
-- installed); an os_build requirement compares marts.vm_inventory.os_version with min_version
-- numerically, part by part, on VMs whose os_name starts with the item; software inventory is
-- not collected, so software requirements are not_assessable.
-- @column vm_id: Lower-case ARM id.
-- @column asset_category: The VM's category.
-- @column category_criticality: The category's criticality (critical, high, medium, low).
-- @column distribution_priority: 1 (critical category) to 4 (low): distribute to lower numbers first.
-- @column baseline_id: The baseline the requirement belongs to.
-- @column requirement: os_build, patch or software.
-- @column item: OS name prefix, patch_key or software name.
-- @column min_version: Minimum build or version (NULL for patches).
-- @column observed: What the VM reports: its OS version, or the patch state.
-- @column observed_at: When the patch state was observed (NULL for other requirements).
-- @column status: compliant, missing_patch, pending_reboot, below_min_build, not_applicable (OS does not match) or not_assessable (no data).
-- @column drifted: status is missing_patch, pending_reboot or below_min_build.
WITH requirements AS (
    SELECT * FROM staging.baselines
    WHERE effective_from IS NULL OR effective_from <= CAST($as_of AS DATE)
),
vms AS (
    SELECT v.vm_id, v.asset_category, v.os_name, v.os_version,
           c.criticality, coalesce(c.distribution_priority, 5) AS distribution_priority
    FROM marts.vm_inventory AS v
    LEFT JOIN staging.asset_categories AS c ON c.category_id = v.asset_category
),
checked AS (
    SELECT v.vm_id, v.asset_category, v.criticality, v.distribution_priority,
           b.baseline_id, b.requirement, b.item, b.min_version,
           CASE b.requirement
               WHEN 'patch' THEN s.state
               WHEN 'os_build' THEN v.os_version
           END AS observed,
           CASE WHEN b.requirement = 'patch' THEN s.observed_at END AS observed_at,
           CASE
               WHEN b.requirement = 'software' THEN 'not_assessable'
               WHEN b.requirement = 'patch' THEN CASE
                   WHEN s.state IN ('installed', 'superseded_satisfied', 'not_applicable')
                       THEN 'compliant'
                   WHEN s.state = 'installed_pending_reboot' THEN 'pending_reboot'
                   WHEN s.state IN ('missing', 'failed', 'not_selected') THEN 'missing_patch'
                   ELSE 'not_assessable'
               END
               WHEN NOT starts_with(lower(coalesce(v.os_name, '')), lower(b.item))
                   THEN CASE WHEN v.os_name IS NULL THEN 'not_assessable' ELSE 'not_applicable' END
               WHEN v.os_version IS NULL OR b.min_version IS NULL THEN 'not_assessable'
               WHEN [TRY_CAST(x AS BIGINT) FOR x IN string_split(v.os_version, '.')]
                    < [TRY_CAST(x AS BIGINT) FOR x IN string_split(b.min_version, '.')]
                   THEN 'below_min_build'
               ELSE 'compliant'
           END AS status
    FROM vms AS v
    JOIN requirements AS b ON b.category_id = v.asset_category
    LEFT JOIN marts.vm_patch_state AS s
        ON b.requirement = 'patch' AND s.vm_id = v.vm_id AND s.patch_key = b.item
)
SELECT vm_id, asset_category, criticality AS category_criticality,
       CAST(distribution_priority AS INTEGER) AS distribution_priority,
       baseline_id, requirement, item, min_version, observed, observed_at, status,
       status IN ('missing_patch', 'pending_reboot', 'below_min_build') AS drifted
FROM checked
ORDER BY distribution_priority, asset_category, vm_id, baseline_id, requirement, item
