-- @table Asset categories (registers/asset_categories.csv): how VMs are grouped for baselines, tests and authorization scope.
-- @column category_id: Category id, e.g. win-web; a VM's `asset-category` tag names one.
-- @column name: Display name.
-- @column description: Free text.
-- @column criticality: critical, high, medium or low: the category's distribution priority.
-- @column distribution_priority: 1 (critical) to 4 (low): patches go to higher-priority categories first.
-- @column rule_order: Rules are tried in ascending order for VMs without the tag.
-- @column tag_key: A VM whose tag tag_key (case-insensitive) equals tag_value matches the rule.
-- @column tag_value: See tag_key.
-- @column os_type: Windows, Linux, or NULL (any OS).
-- @column register_row: Row in the register file (1 = first data row).
-- @column source_file: The estate file the row came from.
SELECT
    trim(category_id) AS category_id,
    nullif(trim(name), '') AS name,
    nullif(trim(description), '') AS description,
    lower(trim(criticality)) AS criticality,
    CASE lower(trim(criticality))
        WHEN 'critical' THEN 1 WHEN 'high' THEN 2 WHEN 'medium' THEN 3 ELSE 4
    END AS distribution_priority,
    CAST(nullif(trim(rule_order), '') AS INTEGER) AS rule_order,
    nullif(trim(tag_key), '') AS tag_key,
    nullif(trim(tag_value), '') AS tag_value,
    CASE lower(trim(os_type)) WHEN 'windows' THEN 'Windows' WHEN 'linux' THEN 'Linux' END AS os_type,
    CAST(_row AS INTEGER) AS register_row,
    source_file
FROM raw.register_asset_categories
