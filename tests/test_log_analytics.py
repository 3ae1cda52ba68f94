"""Log Analytics exports: portal CSV (with or without " [UTC]", US 12-hour datetimes, BOM),
`az monitor log-analytics query` JSON and the query API body give the same rows."""

import json
import logging
from pathlib import Path

import duckdb
import pytest

from pipelines.ingest.errors import SourceFileError
from pipelines.sources.log_analytics.reader import load_log_analytics

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples"

HEADER = ["TimeGenerated", "Computer", "KBID", "UpdateState", "Approved", "PublishedDate"]
PORTAL = [
    ["5/25/2023, 4:32:49.469 AM", "web01.contoso.com", "5034439", "Needed", "true", "1/9/2024, 12:00:00.000 AM"],
    ["12/1/2023, 11:05:07.001 PM", "web02.contoso.com", "", "Not needed", "false", ""],
]
ISO = [
    ["2023-05-25T04:32:49.469Z", "web01.contoso.com", "5034439", "Needed", "true", "2024-01-09T00:00:00Z"],
    ["2023-12-01T23:05:07.001Z", "web02.contoso.com", "", "Not needed", "false", None],
]
EXPECTED = [
    ("2023-05-25 04:32:49.469+00", "web01.contoso.com", "5034439", "Needed", True, "2024-01-09 00:00:00+00"),
    ("2023-12-01 23:05:07.001+00", "web02.contoso.com", None, "Not needed", False, None),
]


def csv_text(header, data, utc_suffix):
    def name(h):
        return f"{h} [UTC]" if utc_suffix and h in ("TimeGenerated", "PublishedDate") else h

    lines = [",".join(f'"{name(h)}"' for h in header)]
    lines += [",".join(f'"{v}"' if v else "" for v in row) for row in data]
    return "\ufeff" + "\n".join(lines) + "\n"


def load(tmp_path: Path, filename: str, content: str, la_table: str = "Update"):
    estate = tmp_path / filename.replace(".", "_")
    (estate / "log_analytics").mkdir(parents=True)
    (estate / "log_analytics" / filename).write_text(content, encoding="utf-8")
    conn = duckdb.connect()
    conn.execute("SET TimeZone = 'UTC'")
    conn.execute("CREATE SCHEMA raw")
    load_log_analytics(conn, estate, la_table, "raw.la", "run-1")
    return conn


def update_rows(conn):
    return conn.execute(
        "SELECT TimeGenerated::VARCHAR, Computer, KBID, UpdateState, Approved, PublishedDate::VARCHAR "
        "FROM raw.la ORDER BY Computer"
    ).fetchall()


@pytest.mark.parametrize("utc_suffix", [True, False])
def test_portal_csv(tmp_path, utc_suffix):
    conn = load(tmp_path, "Update.csv", csv_text(HEADER, PORTAL, utc_suffix))
    assert update_rows(conn) == EXPECTED
    assert conn.execute("SELECT DISTINCT source_file, ingest_run FROM raw.la").fetchall() == [
        ("log_analytics/Update.csv", "run-1")
    ]


def test_az_cli_json(tmp_path):
    body = [{"TableName": "PrimaryResult", **dict(zip(HEADER, row, strict=True))} for row in ISO]
    assert update_rows(load(tmp_path, "Update.json", json.dumps(body))) == EXPECTED


def test_query_api_body(tmp_path):
    types = ["datetime", "string", "string", "string", "bool", "datetime"]
    body = {
        "tables": [
            {
                "name": "PrimaryResult",
                "columns": [{"name": n, "type": t} for n, t in zip(HEADER, types, strict=True)],
                "rows": [[*row[:4], row[4] == "true", row[5]] for row in ISO],
            }
        ]
    }
    assert update_rows(load(tmp_path, "Update-api.json", json.dumps(body))) == EXPECTED


def test_update_does_not_pick_up_update_summary(tmp_path):
    conn = load(tmp_path, "UpdateSummary.csv", csv_text(["TimeGenerated", "Computer"], PORTAL[:1], True))
    assert conn.execute("SELECT count(*) FROM raw.la").fetchall() == [(0,)]


def test_bad_datetime_names_file_row_and_field(tmp_path):
    bad = [PORTAL[0], ["25/13/2023, 4:32:49.469 AM", *PORTAL[1][1:]]]
    with pytest.raises(SourceFileError, match=r"Update\.csv: row 2, field TimeGenerated: '25/13/2023"):
        load(tmp_path, "Update.csv", csv_text(HEADER, bad, True))


def test_missing_required_column(tmp_path):
    with pytest.raises(SourceFileError, match="missing column.*UpdateState"):
        load(tmp_path, "Update.csv", csv_text(["TimeGenerated", "Computer"], [PORTAL[0][:2]], True))


def test_missing_source_gives_empty_typed_table(tmp_path, caplog):
    conn = duckdb.connect()
    conn.execute("CREATE SCHEMA raw")
    with caplog.at_level(logging.WARNING):
        load_log_analytics(conn, tmp_path, "UpdateRunProgress", "raw.la", "r", logging.getLogger("t"))
    assert "UpdateRunProgress" in caplog.text
    types = dict(conn.execute("SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = 'la'").fetchall())
    assert types["TimeGenerated"] == "TIMESTAMP WITH TIME ZONE"
    assert types["SucceededOnRetry"] == "BOOLEAN"
    assert conn.execute("SELECT count(*) FROM raw.la").fetchall() == [(0,)]


def test_real_query_api_sample_types(tmp_path):
    """The REST example carries long and bool as strings ("1", "true"): cast by our types."""
    sample = SAMPLES / "log-analytics" / "LogAnalytics_query_POST_response.rest-spec-v1.json"
    if not sample.exists():
        pytest.skip("shared samples not available")
    body = json.loads(sample.read_text())["responses"]["200"]["body"]
    conn = load(tmp_path, "UpdateSummary-sample.json", json.dumps(body), "UpdateSummary")
    assert conn.execute("SELECT TimeGenerated::VARCHAR, Computer FROM raw.la ORDER BY Computer").fetchall() == [
        ("2017-08-24 06:59:59+00", "ContosoSQLSrv1"),
        ("2017-08-24 06:59:59+00", "Store010Web3"),
    ]
