-- @table One row per machine seen in any source, with the canonical vm_id: the lower-case ARM id of an Azure VM or Arc machine, or nonazure/<lower-case computer> for a machine known only to Log Analytics.
-- @column vm_id: Canonical machine id.
-- @column machine_kind: azure_vm, arc (microsoft.hybridcompute) or non_azure.
-- @column name: Resource name (inventory), else the last segment of the ARM id, else the computer name.
-- @column subscription_id: Subscription GUID parsed from the ARM id (NULL for non-Azure machines).
-- @column resource_group: Resource group parsed from the ARM id, lower-case.
-- @column in_inventory: True when the machine is in azure/virtual_machines.json.
-- @column sources: Sources that mention the machine: inventory, resource_graph, patch_operation, log_analytics.
-- @column computer_names: Computer names / FQDNs Log Analytics reports for the machine.
WITH
-- Resource Graph result ids are <machine ARM id>/patchAssessmentResults/... (or /patchInstallationResults/...): the
-- machine is the text before the first such segment. The ids repeat (1.5 M rows, ~76 k distinct at 10,000 VMs), so
-- distinct ids first, then a plain string cut (a regular expression per row cost seconds).
resource_graph_ids AS (
    SELECT lower(id) AS id, kind
    FROM (
        SELECT DISTINCT id, 'assessment' AS kind FROM raw.patch_assessment_resources
        UNION ALL
        SELECT DISTINCT id, 'installation' FROM raw.patch_installation_resources
    )
),
-- The segment that follows the machine id, per table. Joined in rather than written as a literal so that DuckDB
-- cannot push the filters on vm_id below the DISTINCT, where they would run on all 1.5 M rows again.
markers(kind, marker) AS (
    VALUES ('assessment', '/patchassessmentresults'), ('installation', '/patchinstallationresults')
),
resource_graph_vms AS (
    SELECT split_part(id, marker, 1) AS vm_id
    FROM resource_graph_ids JOIN markers USING (kind)
    -- As with the regexp: no machine without the segment, nor when a newline precedes it (the regexp's '.' stops there).
    WHERE contains(id, marker) AND NOT contains(split_part(id, marker, 1), chr(10))
),
seen AS (
    SELECT lower(id) AS vm_id, 'inventory' AS source, name, NULL AS computer FROM raw.virtual_machines
    UNION ALL
    SELECT DISTINCT vm_id, 'resource_graph', NULL, NULL FROM resource_graph_vms
    UNION ALL
    SELECT lower(resourceId), 'patch_operation', NULL, NULL FROM raw.patch_operations
    UNION ALL
    SELECT vm_id, 'log_analytics', NULL, computer FROM staging.vm_la_machines
)
SELECT
    vm_id,
    CASE
        WHEN vm_id LIKE 'nonazure/%' THEN 'non_azure'
        WHEN vm_id LIKE '%/providers/microsoft.hybridcompute/machines/%' THEN 'arc'
        ELSE 'azure_vm'
    END AS machine_kind,
    coalesce(min(name), nullif(regexp_extract(vm_id, '/providers/[^/]+/[^/]+/([^/]+)$', 1), ''), min(computer)) AS name,
    nullif(regexp_extract(vm_id, '^/subscriptions/([^/]+)', 1), '') AS subscription_id,
    nullif(regexp_extract(vm_id, '/resourcegroups/([^/]+)', 1), '') AS resource_group,
    bool_or(source = 'inventory') AS in_inventory,
    list(DISTINCT source ORDER BY source) AS sources,
    list(DISTINCT computer ORDER BY computer) FILTER (WHERE computer IS NOT NULL) AS computer_names
FROM seen
WHERE vm_id IS NOT NULL AND vm_id <> ''
GROUP BY vm_id
