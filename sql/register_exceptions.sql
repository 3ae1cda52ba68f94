-- @table Patch exceptions / risk acceptances (registers/exceptions.csv).
-- @column exception_id: Exception id (unique).
-- @column vm_id: Lower-case ARM id; NULL = every VM in scope.
-- @column asset_category: A category id or *.
-- @column patch_key: KB digits (no "KB") or <package>_<version>; NULL = any patch.
-- @column cve: CVE id, upper case; NULL = any.
-- @column reason: Why the patch is not applied.
-- @column compensating_control: The mitigation in place.
-- @column risk_owner: Who owns the accepted risk.
-- @column requested_by: Who asked for the exception.
-- @column approver: Who approved it (must differ from requested_by).
-- @column approved_at: When it was approved (UTC).
-- @column expires_at: When it ends (UTC); NULL = no expiry recorded.
-- @column status: active or revoked.
-- @column register_row: Row in the register file (1 = first data row).
-- @column source_file: The estate file the row came from.
SELECT
    trim(exception_id) AS exception_id,
    nullif(lower(trim(vm_id)), '') AS vm_id,
    trim(asset_category) AS asset_category,
    nullif(regexp_replace(trim(patch_key), '^[Kk][Bb](\d+)$', '\1'), '') AS patch_key,
    nullif(upper(trim(cve)), '') AS cve,
    trim(reason) AS reason,
    nullif(trim(compensating_control), '') AS compensating_control,
    nullif(trim(risk_owner), '') AS risk_owner,
    trim(requested_by) AS requested_by,
    nullif(trim(approver), '') AS approver,
    CAST(nullif(trim(approved_at), '') AS TIMESTAMPTZ) AS approved_at,
    CAST(nullif(trim(expires_at), '') AS TIMESTAMPTZ) AS expires_at,
    lower(trim(status)) AS status,
    CAST(_row AS INTEGER) AS register_row,
    source_file
FROM raw.register_exceptions
