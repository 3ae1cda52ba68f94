-- @table Baseline requirements per asset category (registers/baselines.csv): OS build, required patches, software versions.
-- @column baseline_id: Baseline id (several requirements share one).
-- @column category_id: The asset category the requirement applies to.
-- @column requirement: os_build, patch or software.
-- @column item: OS name prefix (os_build), patch_key (patch, KB digits without "KB") or software name.
-- @column min_version: Minimum build or version; NULL for patch requirements.
-- @column effective_from: First day the requirement applies; NULL = always.
-- @column register_row: Row in the register file (1 = first data row).
-- @column source_file: The estate file the row came from.
SELECT
    trim(baseline_id) AS baseline_id,
    trim(category_id) AS category_id,
    lower(trim(requirement)) AS requirement,
    CASE WHEN lower(trim(requirement)) = 'patch'
        THEN regexp_replace(trim(item), '^[Kk][Bb](\d+)$', '\1')
        ELSE trim(item)
    END AS item,
    nullif(trim(min_version), '') AS min_version,
    CAST(nullif(trim(effective_from), '') AS DATE) AS effective_from,
    CAST(_row AS INTEGER) AS register_row,
    source_file
FROM raw.register_baselines
