-- @table How each Log Analytics agent identity resolves to a machine. Order: the row's ARM id (_ResourceId, else ResourceId); else its VM GUID in either byte order; else the agent id, the FQDN or (for Azure machines only) the host name matched to a known machine; else a non-Azure machine named nonazure/<lower-case Computer>.
-- @column la_key: Lower-case ResourceId|VMUUID|SourceComputerId|Computer, the join key used by the staging SQL.
-- @column computer: Computer as reported (FQDN or host name).
-- @column source_computer_id: The agent id.
-- @column vm_uuid: VMUUID as reported, lower-case.
-- @column resource_id: The ARM id reported with the row, lower-case, or NULL.
-- @column computer_environment: Azure or Non-Azure, as reported.
-- @column vm_id: The resolved machine id.
-- @column machine_kind: azure_vm, arc or non_azure.
-- @column matched_by: resource_id, vm_uuid, source_computer_id, fqdn, computer_name or unmatched.
-- @column first_seen_at: First TimeGenerated with this identity.
-- @column last_seen_at: Last TimeGenerated with this identity.
WITH
-- Grouped first on the identity as received (staging.la_identities): the key is built once per
-- identity, not per row.
received AS (
    SELECT * FROM staging.la_identities
),
identities AS (
    SELECT
        lower(coalesce(resource_id, ''))
            || '|' || lower(coalesce(VMUUID, '')) || '|' || lower(coalesce(SourceComputerId, ''))
            || '|' || lower(coalesce(Computer, '')) AS la_key,
        any_value(Computer) AS computer,
        lower(any_value(SourceComputerId)) AS source_computer_id,
        lower(any_value(VMUUID)) AS vm_uuid,
        lower(any_value(resource_id)) AS resource_id,
        max(computer_environment) AS computer_environment,
        min(first_seen_at) AS first_seen_at,
        max(last_seen_at) AS last_seen_at
    FROM received
    GROUP BY la_key
),
resolved AS (
    SELECT
        i.*,
        CASE
            WHEN i.resource_id IS NOT NULL THEN i.resource_id
            WHEN u.vm_id IS NOT NULL THEN u.vm_id
            WHEN s.vm_id IS NOT NULL THEN s.vm_id
            WHEN f.vm_id IS NOT NULL THEN f.vm_id
            WHEN c.vm_id IS NOT NULL AND coalesce(lower(i.computer_environment), '') <> 'non-azure' THEN c.vm_id
            ELSE 'nonazure/' || lower(i.computer)
        END AS vm_id,
        CASE
            WHEN i.resource_id IS NOT NULL THEN 'resource_id'
            WHEN u.vm_id IS NOT NULL THEN 'vm_uuid'
            WHEN s.vm_id IS NOT NULL THEN 'source_computer_id'
            WHEN f.vm_id IS NOT NULL THEN 'fqdn'
            WHEN c.vm_id IS NOT NULL AND coalesce(lower(i.computer_environment), '') <> 'non-azure' THEN 'computer_name'
            ELSE 'unmatched'
        END AS matched_by
    FROM identities AS i
    LEFT JOIN staging.vm_aliases AS u ON u.alias_kind = 'vm_uuid' AND u.alias = i.vm_uuid
    LEFT JOIN staging.vm_aliases AS s ON s.alias_kind = 'source_computer_id' AND s.alias = i.source_computer_id
    LEFT JOIN staging.vm_aliases AS f ON f.alias_kind = 'fqdn' AND f.alias = lower(i.computer)
    LEFT JOIN staging.vm_aliases AS c ON c.alias_kind = 'computer_name' AND c.alias = split_part(lower(i.computer), '.', 1)
)
SELECT
    la_key,
    computer,
    source_computer_id,
    vm_uuid,
    resource_id,
    computer_environment,
    vm_id,
    CASE
        WHEN vm_id LIKE 'nonazure/%' THEN 'non_azure'
        WHEN vm_id LIKE '%/providers/microsoft.hybridcompute/machines/%' THEN 'arc'
        ELSE 'azure_vm'
    END AS machine_kind,
    matched_by,
    first_seen_at,
    last_seen_at
FROM resolved
