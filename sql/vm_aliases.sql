-- @table Identifiers that name a machine, for resolving Log Analytics rows to one vm_id: ARM ids, VM GUIDs (vmId/VMUUID in both byte orders, as Linux agents report it byte-swapped), FQDNs, computer names and agent ids. Only unambiguous identifiers are kept (an identifier seen on two machines resolves nothing).
-- @column alias_kind: arm_id, vm_uuid, fqdn, computer_name or source_computer_id.
-- @column alias: The identifier, lower-case.
-- @column vm_id: The machine it names (lower-case ARM id).
-- @column sources: Where the pairing was seen: inventory, resource_graph, patch_operation, log_analytics.
WITH
vms AS (
    SELECT vm_id, vm_uuid, computer_name, name FROM staging.inventory_identifiers
),
-- Distinct identities as received (staging.la_identities holds each once).
la_rows AS (
    SELECT Computer, SourceComputerId, VMUUID, resource_id FROM staging.la_identities
),
-- Log Analytics rows that carry the ARM id teach us that machine's other identifiers.
la_known AS (
    SELECT DISTINCT
        lower(resource_id) AS vm_id,
        lower(VMUUID) AS vm_uuid,
        lower(Computer) AS fqdn,
        split_part(lower(Computer), '.', 1) AS computer_name,
        lower(SourceComputerId) AS source_computer_id
    FROM la_rows
    WHERE resource_id IS NOT NULL
),
uuids AS (
    SELECT vm_id, vm_uuid, 'inventory' AS source FROM vms
    UNION ALL
    SELECT vm_id, vm_uuid, 'log_analytics' FROM la_known
),
pairs AS (
    SELECT 'arm_id' AS alias_kind, vm_id AS alias, vm_id, 'inventory' AS source FROM vms
    UNION ALL
    SELECT 'vm_uuid', vm_uuid, vm_id, source FROM uuids
    WHERE regexp_full_match(vm_uuid, '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}')
    UNION ALL
    -- The other byte order: the first three groups reversed byte by byte.
    SELECT
        'vm_uuid',
        substr(vm_uuid, 7, 2) || substr(vm_uuid, 5, 2) || substr(vm_uuid, 3, 2) || substr(vm_uuid, 1, 2)
            || '-' || substr(vm_uuid, 12, 2) || substr(vm_uuid, 10, 2)
            || '-' || substr(vm_uuid, 17, 2) || substr(vm_uuid, 15, 2) || substr(vm_uuid, 19),
        vm_id,
        source
    FROM uuids
    WHERE regexp_full_match(vm_uuid, '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}')
    UNION ALL
    SELECT 'computer_name', computer_name, vm_id, 'inventory' FROM vms
    UNION ALL
    SELECT 'computer_name', name, vm_id, 'inventory' FROM vms
    UNION ALL
    SELECT 'fqdn', fqdn, vm_id, 'log_analytics' FROM la_known
    UNION ALL
    SELECT 'computer_name', computer_name, vm_id, 'log_analytics' FROM la_known
    UNION ALL
    SELECT 'source_computer_id', source_computer_id, vm_id, 'log_analytics' FROM la_known
)
SELECT
    alias_kind,
    alias,
    min(vm_id) AS vm_id,
    list(DISTINCT source ORDER BY source) AS sources
FROM pairs
WHERE alias IS NOT NULL AND alias <> ''
GROUP BY alias_kind, alias
HAVING count(DISTINCT vm_id) = 1
