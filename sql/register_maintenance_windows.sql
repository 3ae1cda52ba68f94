-- @table Maintenance windows (registers/maintenance_windows.csv), named by the VM tag maintenance-window.
-- @column window_id: Window id (unique).
-- @column name: Display name.
-- @column rrule: RFC 5545 recurrence rule, e.g. FREQ=WEEKLY;BYDAY=SA.
-- @column start_time: Local start time of each occurrence.
-- @column duration_minutes: Length of each occurrence.
-- @column time_zone: IANA time zone of start_time.
-- @column ring: 0 test, 1 staging, 2 production, 3 critical production.
-- @column environment: Environment the window serves, lower case.
-- @column capacity_vms: VMs per occurrence at most; NULL = unlimited.
-- @column max_role_share: Share (0-1) of one role's members allowed in one occurrence; NULL = no limit.
-- @column register_row: Row in the register file (1 = first data row).
-- @column source_file: The estate file the row came from.
SELECT
    trim(window_id) AS window_id,
    nullif(trim(name), '') AS name,
    upper(trim(rrule)) AS rrule,
    CAST(trim(start_time) AS TIME) AS start_time,
    CAST(trim(duration_minutes) AS INTEGER) AS duration_minutes,
    trim(time_zone) AS time_zone,
    CAST(trim(ring) AS INTEGER) AS ring,
    nullif(lower(trim(environment)), '') AS environment,
    CAST(nullif(trim(capacity_vms), '') AS INTEGER) AS capacity_vms,
    CAST(nullif(trim(max_role_share), '') AS DOUBLE) AS max_role_share,
    CAST(_row AS INTEGER) AS register_row,
    source_file
FROM raw.register_maintenance_windows
