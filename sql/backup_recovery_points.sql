-- @table Every recovery point of a machine that any capture of azure/backup/ shows: vault recovery points (protectedItems/recoveryPoints, properties.recoveryPointTime), the last recovery point each protected-item capture reports, and VM restore points (Microsoft.Compute/restorePointCollections, nested restorePoints or listed on their own, provisioningState Succeeded). One row per machine, time and kind; a point listed by several captures counts once.
-- @column vm_id: Lower-case ARM id of the machine the point restores.
-- @column point_at: Time of the point (UTC).
-- @column kind: vault_backup (Azure Backup) or restore_point (VM restore point).
-- @column point_id: Lower-case ARM id of the recovery point, restore point or protected item that reports it.
-- @column source_file: First estate file (in name order) that shows it.
WITH
items AS (
    SELECT item_id, vm_id FROM staging.backup_protected_items GROUP BY ALL
),
collections AS (
    SELECT lower(id) AS collection_id, lower(properties->'source'->>'id') AS vm_id, properties, source_file
    FROM raw.backup_resources
    WHERE lower(type) = 'microsoft.compute/restorepointcollections'
),
points AS (
    SELECT vm_id, last_recovery_point_at AS point_at, 'vault_backup' AS kind, item_id AS point_id, source_file
    FROM staging.backup_protected_items
    WHERE last_recovery_point_at IS NOT NULL
    UNION ALL
    SELECT i.vm_id, CAST(r.properties->>'recoveryPointTime' AS TIMESTAMPTZ), 'vault_backup', lower(r.id), r.source_file
    FROM raw.backup_resources AS r
    JOIN items AS i ON split_part(lower(r.id), '/recoverypoints/', 1) = i.item_id
    WHERE lower(r.type) = 'microsoft.recoveryservices/vaults/backupfabrics/protectioncontainers/protecteditems/recoverypoints'
    UNION ALL
    SELECT c.vm_id, CAST(p->'properties'->>'timeCreated' AS TIMESTAMPTZ), 'restore_point', lower(p->>'id'), c.source_file
    FROM collections AS c, unnest(from_json(coalesce(c.properties->'restorePoints', '[]'), '["JSON"]')) AS t(p)
    WHERE coalesce(p->'properties'->>'provisioningState', 'Succeeded') = 'Succeeded'
    UNION ALL
    SELECT c.vm_id, CAST(r.properties->>'timeCreated' AS TIMESTAMPTZ), 'restore_point', lower(r.id), r.source_file
    FROM raw.backup_resources AS r
    JOIN (SELECT DISTINCT collection_id, vm_id FROM collections) AS c
        ON split_part(lower(r.id), '/restorepoints/', 1) = c.collection_id
    WHERE lower(r.type) = 'microsoft.compute/restorepointcollections/restorepoints'
      AND coalesce(r.properties->>'provisioningState', 'Succeeded') = 'Succeeded'
)
SELECT vm_id, point_at, kind, min(point_id) AS point_id, min(source_file) AS source_file
FROM points
WHERE vm_id IS NOT NULL AND point_at IS NOT NULL
GROUP BY vm_id, point_at, kind
ORDER BY vm_id, point_at, kind
