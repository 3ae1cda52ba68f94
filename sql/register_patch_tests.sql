-- @table Patch test runs per patch and asset category (registers/patch_tests.csv), the testing repository of stage 5.
-- @column test_id: Test id (unique).
-- @column patch_key: KB digits (no "KB") or <package>_<version>.
-- @column asset_category: The category the test stands for.
-- @column environment: test or staging: where it ran.
-- @column hosts: VM names or ids the test ran on.
-- @column started_at: Start (UTC).
-- @column ended_at: End (UTC).
-- @column result: passed, failed or aborted.
-- @column failure_reason: Why it failed, if it did.
-- @column incident_ids: Support incidents raised by the test.
-- @column tester: Person who ran and signed the test.
-- @column register_row: Row in the register file (1 = first data row).
-- @column source_file: The estate file the row came from.
SELECT
    trim(test_id) AS test_id,
    regexp_replace(trim(patch_key), '^[Kk][Bb](\d+)$', '\1') AS patch_key,
    trim(asset_category) AS asset_category,
    lower(trim(environment)) AS environment,
    [trim(h) FOR h IN string_split(hosts, ';') IF trim(h) <> ''] AS hosts,
    CAST(nullif(trim(started_at), '') AS TIMESTAMPTZ) AS started_at,
    CAST(nullif(trim(ended_at), '') AS TIMESTAMPTZ) AS ended_at,
    lower(trim(result)) AS result,
    nullif(trim(failure_reason), '') AS failure_reason,
    [trim(i) FOR i IN string_split(incident_ids, ';') IF trim(i) <> ''] AS incident_ids,
    trim(tester) AS tester,
    CAST(_row AS INTEGER) AS register_row,
    source_file
FROM raw.register_patch_tests
