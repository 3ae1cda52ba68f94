"""Stage 5, patch testing and authorization.

The registers it rests on and their ledger are the registers source's
(pipelines/sources/registers/). Here: the authorization state machine (marts.authorization_events,
marts.authorization_status); change-control findings; rogue patches; and the stage-1 patch
lifecycle inventory that these records feed.
"""

import dagster as dg

from pipelines.tables import sql_table_asset


class FindingsConfig(dg.Config):
    pir_window_days: int = 5  # post-implementation review window for emergency changes


class RoguePatchConfig(dg.Config):
    min_vms: int = 3
    window_days: int = 14


# Descriptions and deps: the headers of the sql/ files of the same names.
authorization_events = sql_table_asset("marts.authorization_events")
authorization_status = sql_table_asset("marts.authorization_status")
authorization_findings = sql_table_asset(
    "marts.authorization_findings",
    config=FindingsConfig,
    params=lambda config: {"pir_window_days": config.pir_window_days},
)


def _rogue_params(config: RoguePatchConfig) -> dict:
    return {"min_vms": config.min_vms, "window_days": config.window_days}


rogue_patches = sql_table_asset("marts.rogue_patches", config=RoguePatchConfig, params=_rogue_params)
authorization_install_findings = sql_table_asset(
    "marts.authorization_install_findings", config=RoguePatchConfig, params=_rogue_params
)
patch_lifecycle = sql_table_asset("marts.patch_lifecycle")
