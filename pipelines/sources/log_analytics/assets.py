"""Raw assets of the Log Analytics update tables (Update, UpdateSummary, UpdateRunProgress),
typed as received."""

from pipelines.sources.log_analytics.reader import load_log_analytics
from pipelines.sources.scan_raw import raw_scan_table


def _log_analytics(la_table: str):
    return lambda conn, estate, table, run, log, full_reload=False: load_log_analytics(
        conn, estate, la_table, table, run, log, full_reload=full_reload
    )


def _la_asset(table: str, la_table: str):
    return raw_scan_table(
        table, f"Log Analytics {la_table} records (portal CSV, az JSON or query API body), typed.",
        _log_analytics(la_table))


raw_la_update = _la_asset("raw.la_update", "Update")
raw_la_update_summary = _la_asset("raw.la_update_summary", "UpdateSummary")
raw_la_update_run_progress = _la_asset("raw.la_update_run_progress", "UpdateRunProgress")
