-- @summary What arrived after the evaluation date for the days up to it: scan files that landed in
-- @summary the estate after the end of $as_of holding only rows of earlier days, and register rows
-- @summary first recorded in the ledger after it for events on or before it. A pack as known then
-- @summary leaves them out; the pack as corrected since counts them and lists them here.
-- @group evidence_pack
-- @depends staging.patch_observations, staging.assessment_runs
-- @depends ledger.authorization_events, ledger.patch_tests, ledger.exceptions
-- @depends staging.authorization_events, staging.patch_tests, staging.exceptions
-- @unique arrival_id: Each late arrival once.
-- @table Late arrivals as of $as_of: one row per scan file version or register row that arrived after the end of the evaluation date (UTC) with content dated on or before it. A scan file counts when it landed (raw.ingested_files.landed_at, its modification time as first recorded) after the date and every time its rows carry (staging.scan_file_days) is on or before it; a file that also carries later times is a later capture, not a late one. A register row counts when it arrived (the ledger's arrived_at) after the date and its event (occurred_at, started_at, approved_at) is on or before it. Carried into marts.audit_findings (late_scan_file, register_row_recorded_late).
-- @column arrival_id: Stable id: sha256 of kind, '|' and subject.
-- @column kind: scan_file or register_row.
-- @column subject: The estate file (scan_file) or <register>/<row id> (register_row).
-- @column source: The raw scan table or the register.
-- @column source_sha256: sha256 of the file version (scan_file) or of the row's first-recorded content (register_row).
-- @column covers_from: First UTC day the file's rows carry, or the event's day.
-- @column covers_to: Last UTC day the file's rows carry, or the event's day.
-- @column event_at: The register event's time (NULL for a file).
-- @column arrived_at: When it arrived (UTC): the file's landing time, or the ledger row's arrived_at.
-- @column days_late: Days from the evaluation date to the UTC day of the arrival (1 = the next day).
-- @column as_of: Evaluation date.
WITH
params AS (
    SELECT CAST($as_of AS DATE) AS as_of, CAST($as_of AS DATE) + INTERVAL 1 DAY AS day_end
),
files AS (
    SELECT 'scan_file' AS kind, a.source_file AS subject, a.raw_table AS source, a.source_sha256,
           d.first_day AS covers_from, d.last_day AS covers_to, NULL::TIMESTAMPTZ AS event_at,
           a.landed_at AS arrived_at
    FROM _scan_arrivals AS a
    JOIN staging.scan_file_days AS d USING (raw_table, source_file, source_sha256), params
    WHERE a.landed_at >= params.day_end AND d.last_day <= params.as_of
),
register_events AS (
    SELECT 'authorization_events' AS register, event_id AS row_id, occurred_at AS event_at
    FROM staging.authorization_events
    UNION ALL
    SELECT 'patch_tests', test_id, started_at FROM staging.patch_tests
    UNION ALL
    SELECT 'exceptions', exception_id, approved_at FROM staging.exceptions
),
ledger_rows AS (
    SELECT 'authorization_events' AS register, row_id, row_sha256, arrived_at FROM ledger.authorization_events
    UNION ALL
    SELECT 'patch_tests', row_id, row_sha256, arrived_at FROM ledger.patch_tests
    UNION ALL
    SELECT 'exceptions', row_id, row_sha256, arrived_at FROM ledger.exceptions
),
rows_late AS (
    SELECT 'register_row' AS kind, l.register || '/' || l.row_id AS subject, l.register AS source,
           l.row_sha256 AS source_sha256, CAST(timezone('UTC', e.event_at) AS DATE) AS covers_from,
           CAST(timezone('UTC', e.event_at) AS DATE) AS covers_to, e.event_at, l.arrived_at
    FROM ledger_rows AS l
    JOIN register_events AS e USING (register, row_id), params
    WHERE l.arrived_at >= params.day_end AND e.event_at < params.day_end
)
SELECT
    sha256(kind || '|' || subject) AS arrival_id,
    kind,
    subject,
    source,
    source_sha256,
    covers_from,
    covers_to,
    event_at,
    arrived_at,
    CAST(date_diff('day', params.as_of, CAST(timezone('UTC', arrived_at) AS DATE)) AS INTEGER) AS days_late,
    params.as_of
FROM (SELECT * FROM files UNION ALL SELECT * FROM rows_late) AS late, params
ORDER BY kind, arrived_at, subject
