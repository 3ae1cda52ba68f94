"""CISA KEV (JSON and CSV forms) and FIRST EPSS daily files."""

from __future__ import annotations

import csv
import gzip
import json
from datetime import date
from pathlib import Path

import duckdb
import pytest

from pipelines.sources.epss.reader import read_epss
from pipelines.sources.kev.reader import read_kev

KEV_JSON = Path(__file__).parents[2] / "shared" / "samples" / "kev" / "known_exploited_vulnerabilities.json"
VULN_COLUMNS = ["cve", "vendor_project", "product", "vulnerability_name", "date_added",
                "short_description", "required_action", "due_date",
                "known_ransomware_campaign_use", "notes", "cwes"]


@pytest.fixture
def conn():
    connection = duckdb.connect()
    connection.execute("SET TimeZone = 'UTC'")
    yield connection
    connection.close()


def _kev_sample() -> Path:
    if not KEV_JSON.exists():
        pytest.skip("KEV sample not available")
    return KEV_JSON


def test_kev_json_sample(conn):
    table = read_kev(conn, _kev_sample())
    assert table.num_rows == 1404
    rows = {r["cve"]: r for r in table.to_pylist()}
    entry = rows["CVE-2024-21412"]
    assert entry["catalog_version"] == "2025.08.25"
    assert entry["date_added"] == date(2024, 2, 13) and entry["due_date"] == date(2024, 3, 5)
    assert entry["cwes"] == ["CWE-693"]
    assert rows["CVE-2024-38080"]["product"] == "Windows"  # "Windows " trimmed
    assert sum(1 for r in rows.values() if r["cwes"] == []) == 152


def test_kev_csv_form_gives_the_same_rows(conn, tmp_path):
    catalog = json.loads(_kev_sample().read_text(encoding="utf-8"))
    path = tmp_path / "known_exploited_vulnerabilities.csv"
    fields = ["cveID", "vendorProject", "product", "vulnerabilityName", "dateAdded",
              "shortDescription", "requiredAction", "dueDate", "knownRansomwareCampaignUse",
              "notes", "cwes"]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(fields)
        for v in catalog["vulnerabilities"]:
            writer.writerow([", ".join(v.get(f, [])) if f == "cwes" else v.get(f, "") for f in fields])
    from_json = read_kev(conn, KEV_JSON).select(VULN_COLUMNS)
    from_csv = read_kev(conn, path)
    assert from_csv.select(VULN_COLUMNS).equals(from_json)
    # The CSV names no snapshot: it is dated by its newest dateAdded.
    assert from_csv.column("catalog_version")[0].as_py() == "2025.08.25"


def test_epss_comment_line_and_snapshot(conn, tmp_path):
    path = tmp_path / "epss_scores-2025-09-03.csv.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write("#model_version:v2025.03.14,score_date:2025-09-03T12:55:00Z\n"
                     "cve,epss,percentile\nCVE-1999-0001,0.0142,0.7991\ncve-2024-0519,0.90001,0.99\n")
    rows = read_epss(conn, path).to_pylist()
    assert rows == [
        {"cve": "CVE-1999-0001", "epss": 0.0142, "percentile": 0.7991,
         "model_version": "v2025.03.14", "score_date": date(2025, 9, 3)},
        {"cve": "CVE-2024-0519", "epss": 0.90001, "percentile": 0.99,
         "model_version": "v2025.03.14", "score_date": date(2025, 9, 3)},
    ]


def test_epss_older_offset_format_and_missing_comment(conn, tmp_path):
    old = tmp_path / "epss_scores-2023-04-09.csv"
    old.write_text("#model_version:v2023.03.01,score_date:2023-04-09T00:00:00+0000\n"
                   "cve,epss,percentile\nCVE-2022-27225,0.00132,0.46751\n", encoding="utf-8")
    assert read_epss(conn, old).to_pylist()[0]["score_date"] == date(2023, 4, 9)
    bare = tmp_path / "epss_scores-2024-01-02.csv"
    bare.write_text("cve,epss,percentile\nCVE-2022-27225,0.5,0.9\n", encoding="utf-8")
    (row,) = read_epss(conn, bare).to_pylist()
    assert row["score_date"] == date(2024, 1, 2) and row["model_version"] is None
