"""Stage 4: where the update servers should be, and where they are."""

from pipelines.tables import sql_table_asset

# The seed's threshold: a side with fewer than 10 % of the machines gets no server of its own.
MINORITY_SHARE = 0.10
# Monthly update payload per machine, for the traffic estimate (cumulative update plus
# servicing stack, .NET and definitions for Windows; a month of package updates for Linux).
WINDOWS_MONTHLY_MB = 1200
LINUX_MONTHLY_MB = 250


def _scenario(conn, as_of) -> dict:
    scenario = conn.execute("SELECT any_value(scenario) FROM marts.update_server_placement").fetchone()[0]
    return {"scenario": scenario or "no machines"}


# Description and deps: the header of sql/update_server_placement.sql.
update_server_placement = sql_table_asset(
    "marts.update_server_placement",
    params={
        "minority_share": MINORITY_SHARE,
        "windows_monthly_mb": WINDOWS_MONTHLY_MB,
        "linux_monthly_mb": LINUX_MONTHLY_MB,
    },
    metadata=_scenario,
    preview_rows=10,
)
