-- @table Blackout dates (registers/blackout_dates.csv): no patching on these days.
-- @column blackout_id: Blackout id (unique).
-- @column starts_on: First day (inclusive).
-- @column ends_on: Last day (inclusive).
-- @column environment: Environment, lower case, or * (every environment).
-- @column reason: Why.
-- @column register_row: Row in the register file (1 = first data row).
-- @column source_file: The estate file the row came from.
SELECT
    trim(blackout_id) AS blackout_id,
    CAST(trim(starts_on) AS DATE) AS starts_on,
    CAST(trim(ends_on) AS DATE) AS ends_on,
    coalesce(nullif(lower(trim(environment)), ''), '*') AS environment,
    nullif(trim(reason), '') AS reason,
    CAST(_row AS INTEGER) AS register_row,
    source_file
FROM raw.register_blackout_dates
