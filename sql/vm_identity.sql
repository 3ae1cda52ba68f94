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
seen AS (
    SELECT lower(id) AS vm_id, 'inventory' AS source, name, NULL AS computer FROM raw.virtual_machines
    UNION ALL
    SELECT vm_id, 'resource_graph', NULL, NULL FROM staging.resource_graph_machines
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
