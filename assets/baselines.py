"""Stage 2, VM baselining: asset categories, baselines per category, drift per VM, and the
distribution priority of each category."""

from assets.authorization import register_asset
from assets.common import STAGE2_BASELINES
from pipelines.tables import sql_table_asset

asset_categories = register_asset("asset_categories", STAGE2_BASELINES)
baselines = register_asset("baselines", STAGE2_BASELINES)


# Descriptions and deps: the headers of sql/baseline_drift.sql and sql/baseline_compliance.sql.
baseline_drift = sql_table_asset("marts.baseline_drift")
baseline_compliance = sql_table_asset(
    "marts.baseline_compliance", order_by="distribution_priority, asset_category"
)
