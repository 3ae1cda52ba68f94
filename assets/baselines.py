"""Stage 2, VM baselining: drift per VM against its category's baseline, and the distribution
priority of each category (the asset-category and baseline registers: pipelines/sources/registers/)."""

from pipelines.tables import sql_table_asset

# Descriptions and deps: the headers of sql/baseline_drift.sql and sql/baseline_compliance.sql.
baseline_drift = sql_table_asset("marts.baseline_drift")
baseline_compliance = sql_table_asset(
    "marts.baseline_compliance", order_by="distribution_priority, asset_category"
)
