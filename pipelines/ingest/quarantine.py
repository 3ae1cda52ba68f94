"""`raw.quarantine`: rows of a large export set aside instead of failing the file.

Exports hold thousands of rows and one garbled row should not block the evidence run, so a
loader may quarantine bad rows, as BigQuery's max_bad_records or DuckDB's rejects table do: when
at most QUARANTINE_MAX_SHARE of a file's rows are bad, those rows go here (source, source_file,
row, field, reason, raw_value, ingest_run; one row per bad cell) and every other row loads.
Above that share the file is probably not the documented format and the load fails. The rows of
a raw table are replaced with that table; the raw asset reports their count as
`quarantined_rows`. Today the Log Analytics reader uses it.
"""

import duckdb

# Share of a file's rows that may be quarantined instead of failing the file.
QUARANTINE_MAX_SHARE = 0.01
# Values in raw.quarantine are cut to this many characters.
QUARANTINE_VALUE_CHARS = 4096
QUARANTINE_DDL = """
CREATE TABLE IF NOT EXISTS raw.quarantine (
    source VARCHAR, source_file VARCHAR, "row" BIGINT, field VARCHAR, reason VARCHAR,
    raw_value VARCHAR, ingest_run VARCHAR
)
"""


def quarantine_count(conn: duckdb.DuckDBPyConnection, source: str) -> int:
    """Rows of `source` (a raw table) set aside in raw.quarantine by the last load."""
    exists = conn.execute(
        "SELECT count(*) FROM information_schema.tables "
        "WHERE table_schema = 'raw' AND table_name = 'quarantine'"
    ).fetchall()[0][0]
    if not exists:
        return 0
    return conn.execute(
        'SELECT count(DISTINCT (source_file, "row")) FROM raw.quarantine WHERE source = ?', [source]
    ).fetchall()[0][0]
