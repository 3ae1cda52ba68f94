-- @table Maintenance windows of the InGuestPatch maintenance configurations in force on $as_of (latest capture of azure/maintenance/ up to the evaluation date), in the columns of staging.maintenance_windows so the schedule reads both alike; window_id is the configuration's ARM id. The schedule comes from the configuration (staging.maintenance_recurrences: recurEvery as an RRULE and a day offset, startDateTime, expirationDateTime, duration, timeZone as IANA). Ring, environment, capacity and role share come from the register window of the same name (registers/maintenance_windows.csv) when there is one; else the environment of its machines (the highest ring's when they are mixed: production, then staging, then test and dev), ring 2 for production, 1 for staging, 0 otherwise, capacity and role share open (NULL).
-- @column window_id: Lower-case ARM id of the configuration (what marts.remediation_schedule.window_id carries).
-- @column name: Configuration name.
-- @column rrule: RFC 5545 rule from recurEvery (e.g. "1Month Second Tuesday Offset2" is FREQ=MONTHLY;INTERVAL=1;BYDAY=+2TU with offset_days 2).
-- @column start_time: Local start time of each occurrence (from startDateTime).
-- @column duration_minutes: Length of each occurrence (duration hh:mm).
-- @column time_zone: IANA time zone of the occurrences (timeZone through CLDR windowsZones).
-- @column ring: 0 test, 1 staging, 2 production, 3 critical production.
-- @column environment: Environment the window serves (its blackout dates apply).
-- @column capacity_vms: VMs per occurrence at most; NULL = unlimited.
-- @column max_role_share: Share (0-1) of one role's members allowed in one occurrence; NULL = only never all of them.
-- @column starts_at: startDateTime: first possible occurrence, local time of time_zone.
-- @column expires_at: expirationDateTime, local time; NULL when open.
-- @column offset_days: Days added to every occurrence of rrule (recurEvery Offset<n>).
-- @column recur_every: recurEvery as Azure states it.
-- @column windows_time_zone: timeZone as Azure states it (a Windows time-zone name).
-- @column windows_classifications: installPatches.windowsParameters.classificationsToInclude: what a run installs on Windows (NULL: not stated).
-- @column linux_classifications: installPatches.linuxParameters.classificationsToInclude: what a run installs on Linux (NULL: not stated).
-- @column settings_from: Where ring, environment, capacity and role share come from: register window <id>, or default for <environment> machines.
-- @column machines: Machines whose schedule it is (marts.vm_maintenance_windows).
-- @column source_file: The estate file of the configuration.
-- @column as_of: Evaluation date.
WITH
params AS (
    SELECT CAST($as_of AS DATE) AS as_of
),
configurations AS (
    SELECT c.*
    FROM latest_capture('staging.maintenance_configurations', $as_of) AS c
    WHERE lower(c.maintenance_scope) = 'inguestpatch'
),
served AS (  -- the environment of a configuration's machines, the highest ring's first
    SELECT configuration_id, count(*) AS machines,
           arg_min(environment, CASE environment WHEN 'production' THEN 0 WHEN 'staging' THEN 1
                                                 WHEN 'test' THEN 2 WHEN 'dev' THEN 3 ELSE 4 END) AS environment
    FROM marts.vm_maintenance_windows
    WHERE configuration_id IS NOT NULL
    GROUP BY configuration_id
)
SELECT
    c.configuration_id AS window_id,
    c.name,
    r.rrule,
    CAST(r.starts_at AS TIME) AS start_time,
    r.duration_minutes::INTEGER AS duration_minutes,
    r.time_zone,
    coalesce(w.ring, CASE s.environment WHEN 'production' THEN 2 WHEN 'staging' THEN 1 ELSE 0 END)::INTEGER AS ring,
    CASE WHEN w.window_id IS NOT NULL THEN w.environment ELSE s.environment END AS environment,
    w.capacity_vms,
    w.max_role_share,
    r.starts_at,
    r.expires_at,
    r.offset_days::INTEGER AS offset_days,
    c.recur_every,
    c.time_zone AS windows_time_zone,
    c.windows_classifications,
    c.linux_classifications,
    CASE WHEN w.window_id IS NOT NULL THEN 'register window ' || w.window_id
         ELSE 'default for ' || coalesce(s.environment, 'unassigned') || ' machines' END AS settings_from,
    coalesce(s.machines, 0)::INTEGER AS machines,
    c.source_file,
    params.as_of
FROM configurations AS c
JOIN staging.maintenance_recurrences AS r USING (configuration_id, source_file)
LEFT JOIN staging.maintenance_windows AS w ON lower(w.window_id) = lower(c.name)
LEFT JOIN served AS s USING (configuration_id)
CROSS JOIN params
ORDER BY window_id
