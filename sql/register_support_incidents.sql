-- @table Patch-related support incidents (registers/support_incidents.csv): vendor, Microsoft PSS or internal cases.
-- @column incident_id: Incident id (unique).
-- @column source: vendor, pss or internal.
-- @column external_case_id: Vendor or Microsoft PSS case number.
-- @column patch_key: KB digits (no "KB") or <package>_<version>.
-- @column vm_id: Lower-case ARM id, or NULL.
-- @column opened_at: Opened (UTC).
-- @column closed_at: Closed (UTC), NULL while open.
-- @column severity: As the case records it.
-- @column summary: Free text.
-- @column register_row: Row in the register file (1 = first data row).
-- @column source_file: The estate file the row came from.
SELECT
    trim(incident_id) AS incident_id,
    lower(trim(source)) AS source,
    nullif(trim(external_case_id), '') AS external_case_id,
    nullif(regexp_replace(trim(patch_key), '^[Kk][Bb](\d+)$', '\1'), '') AS patch_key,
    nullif(lower(trim(vm_id)), '') AS vm_id,
    CAST(trim(opened_at) AS TIMESTAMPTZ) AS opened_at,
    CAST(nullif(trim(closed_at), '') AS TIMESTAMPTZ) AS closed_at,
    nullif(trim(severity), '') AS severity,
    nullif(trim(summary), '') AS summary,
    CAST(_row AS INTEGER) AS register_row,
    source_file
FROM raw.register_support_incidents
