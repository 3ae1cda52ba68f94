-- @table Patch rollbacks per VM (registers/rollbacks.csv).
-- @column rollback_id: Rollback id (unique).
-- @column vm_id: Lower-case ARM id.
-- @column patch_key: KB digits (no "KB") or <package>_<version>.
-- @column rolled_back_at: When (UTC).
-- @column reason: Why.
-- @column incident_id: The support incident behind it, if any.
-- @column actor: Who rolled back.
-- @column register_row: Row in the register file (1 = first data row).
-- @column source_file: The estate file the row came from.
SELECT
    trim(rollback_id) AS rollback_id,
    lower(trim(vm_id)) AS vm_id,
    regexp_replace(trim(patch_key), '^[Kk][Bb](\d+)$', '\1') AS patch_key,
    CAST(trim(rolled_back_at) AS TIMESTAMPTZ) AS rolled_back_at,
    nullif(trim(reason), '') AS reason,
    nullif(trim(incident_id), '') AS incident_id,
    nullif(trim(actor), '') AS actor,
    CAST(_row AS INTEGER) AS register_row,
    source_file
FROM raw.register_rollbacks
