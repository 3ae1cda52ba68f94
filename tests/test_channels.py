"""marts.bulletin_channels: freshness per channel, the MSRC index's pending months, the checks."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from pipelines.resources import RunSettings, WarehouseResource
from pipelines.sources.bulletins.assets import bulletin_channels
from pipelines.sources.bulletins.resource import BulletinWatch, bulletin_resources
from pipelines.sources.epss.assets import epss_scores
from pipelines.sources.kev.assets import kev_vulnerabilities
from pipelines.sources.msrc.assets import msrc_documents, msrc_index
from pipelines.sources.msrc.resource import MsrcResource
from pipelines.sources.osv.assets import osv_advisories
from pipelines.sources.vulnrichment.assets import vulnrichment_ssvc

CHANNEL_ASSETS = [
    msrc_documents, kev_vulnerabilities, epss_scores,
    osv_advisories, vulnrichment_ssvc, msrc_index,
    bulletin_channels,  # with its checks bulletin_channels_fresh and msrc_months_ingested
]
NAMES = {"Jan": "January", "Apr": "April", "May": "May", "Jun": "June", "Jul": "July", "Sep": "September"}


def month_doc(document_id: str, initial: str, current: str) -> dict:
    name = NAMES[document_id.split("-")[1]]
    return {
        "DocumentTitle": {"Value": f"{name} {document_id[:4]} Security Updates"},
        "DocumentTracking": {"Identification": {"ID": {"Value": document_id}},
                             "InitialReleaseDate": initial, "CurrentReleaseDate": current},
        "ProductTree": {"FullProductName": [{"ProductID": "11923", "Value": "Windows Server 2022"}]},
        "Vulnerability": [{
            "CVE": f"CVE-2026-{document_id[-3:]}",
            "ProductStatuses": [{"ProductID": ["11923"], "Type": 3}],
            "Threats": [{"Type": 3, "ProductID": ["11923"], "Description": {"Value": "Important"}}],
            "Remediations": [{"Type": 2, "Description": {"Value": "5040001"}, "ProductID": ["11923"]}],
        }],
    }


def index_entry(document_id: str, initial: str, current: str, title: str | None = None) -> dict:
    name = NAMES[document_id.split("-")[1]]
    return {"ID": document_id, "Alias": document_id,
            "DocumentTitle": title or f"{name} {document_id[:4]} Security Updates", "Severity": None,
            "InitialReleaseDate": initial, "CurrentReleaseDate": current,
            "CvrfUrl": f"https://api.msrc.microsoft.com/cvrf/v3.0/cvrf/{document_id}"}


INDEX = {"@odata.context": "https://api.msrc.microsoft.com/$metadata#Updates", "value": [
    index_entry("1999-Sep", "1999-09-01T00:00:00Z", "2026-06-20T00:00:00Z", "Mariner Release Notes"),
    index_entry("2023-Jan", "2023-01-10T08:00:00Z", "2023-01-10T08:00:00Z"),  # before the span
    index_entry("2025-Jan", "2025-01-14T08:00:00Z", "2025-01-14T08:00:00Z"),  # never ingested
    index_entry("2026-Apr", "2026-04-14T07:00:00Z", "2026-06-01T00:00:00Z"),  # revised since
    index_entry("2026-May", "2026-05-12T07:00:00Z", "2026-05-20T00:00:00Z"),  # up to date
    index_entry("2026-Jun", "2026-06-09T07:00:00Z", "2026-06-09T07:00:00Z"),  # not ingested
    index_entry("2026-Jul", "2026-07-14T07:00:00Z", "2026-07-14T07:00:00Z"),  # after as_of
]}


@pytest.fixture
def estate(tmp_path: Path) -> Path:
    root = tmp_path / "estate"
    bulletin = root / "bulletins"
    for source in ("msrc", "kev", "epss", "osv"):
        (bulletin / source).mkdir(parents=True)
    (bulletin / "msrc" / "2026-Apr.json").write_text(
        json.dumps(month_doc("2026-Apr", "2026-04-14T07:00:00", "2026-04-14T07:00:00")))
    (bulletin / "msrc" / "2026-May.json").write_text(
        json.dumps(month_doc("2026-May", "2026-05-12T07:00:00", "2026-05-20T00:00:00")))
    (bulletin / "msrc" / "updates.json").write_text(json.dumps(INDEX))
    (bulletin / "kev" / "known_exploited_vulnerabilities.json").write_text(json.dumps({
        "title": "CISA Catalog of Known Exploited Vulnerabilities", "catalogVersion": "2026.06.28",
        "dateReleased": "2026-06-28T17:04:19.9796Z", "count": 1,
        "vulnerabilities": [{"cveID": "CVE-2026-0001", "vendorProject": "Microsoft", "product": "Windows",
                             "vulnerabilityName": "x", "dateAdded": "2026-06-28", "shortDescription": "x",
                             "requiredAction": "x", "dueDate": "2026-07-19", "cwes": []}]}))
    (bulletin / "epss" / "epss_scores-2026-06-26.csv.gz").write_bytes(gzip.compress(
        b"#model_version:v2025.03.14,score_date:2026-06-26T00:00:00Z\ncve,epss,percentile\n"
        b"CVE-2026-0001,0.5,0.9\nCVE-2026-0002,0.1,0.4\n"))
    (bulletin / "osv" / "USN-7000-1.json").write_text(json.dumps({
        "id": "USN-7000-1", "modified": "2026-06-15T00:00:00Z", "published": "2026-06-15T00:00:00Z",
        "affected": [{"package": {"ecosystem": "Ubuntu:22.04:LTS", "name": "curl"},
                      "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "7.81.0-1ubuntu1.20"}]}]}]}))
    record = bulletin / "vulnrichment" / "2026" / "0xxx" / "CVE-2026-0001.json"
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({
        "dataType": "CVE_RECORD", "dataVersion": "5.1",
        "cveMetadata": {"cveId": "CVE-2026-0001", "state": "PUBLISHED", "dateUpdated": "2026-06-29T10:00:00Z"},
        "containers": {"adp": [{"title": "CISA ADP Vulnrichment",
                                "providerMetadata": {"dateUpdated": "2026-06-29T09:00:00Z"},
                                "metrics": [{"other": {"type": "ssvc", "content": {
                                    "timestamp": "2026-06-29T08:00:00Z", "options": [
                                        {"Exploitation": "active"}, {"Automatable": "no"},
                                        {"Technical Impact": "total"}]}}}]}]}}))
    return root


def run(tmp_path: Path, estate: Path, assets=None, source: str = "files", **overrides):
    database = tmp_path / "w.duckdb"
    result = dg.materialize(
        assets or CHANNEL_ASSETS,
        resources={
            **bulletin_resources(),
            "warehouse": WarehouseResource(database=str(database)),
            "run_settings": RunSettings(estate_dir=str(estate), as_of="2026-06-30", source=source),
            **overrides,
        },
        raise_on_error=False,
    )
    return result, duckdb.connect(str(database), read_only=True)


def channels(conn) -> dict[str, dict]:
    cursor = conn.execute("SELECT * FROM marts.bulletin_channels ORDER BY channel")
    names = [d[0] for d in cursor.description]
    return {row[0]: dict(zip(names, row, strict=True)) for row in cursor.fetchall()}


def test_channels_freshness_and_pending_months(tmp_path, estate):
    # All five channels watched; MSRC's span is the default 24 months.
    result, conn = run(tmp_path, estate, bulletin_watch=BulletinWatch(), msrc_api=MsrcResource(months=24))
    assert result.success
    rows = channels(conn)
    assert list(rows) == ["epss", "kev", "msrc", "osv", "vulnrichment"]
    msrc_row, kev_row, epss_row, osv_row = rows["msrc"], rows["kev"], rows["epss"], rows["osv"]
    # msrc: newest CurrentReleaseDate 2026-05-20, 41 days before 2026-06-30 > 35.
    assert (msrc_row["newest_document"], msrc_row["age_days"], msrc_row["stale"], msrc_row["status"]) == (
        "2026-May", 41, True, "stale")
    assert (msrc_row["documents_held"], msrc_row["rows_held"]) == (2, 2)
    # updates.json is the index, not a month document: only the two months are ingested.
    assert msrc_row["pending_documents"] == ["2025-Jan", "2026-Apr", "2026-Jun"]
    assert msrc_row["pending_count"] == 3 and msrc_row["index_fetched_at"] is not None
    assert (kev_row["newest_document"], kev_row["age_days"], kev_row["stale"], kev_row["stale_after_days"]) == (
        "2026.06.28", 2, False, 7)
    assert (epss_row["newest_document"], epss_row["age_days"], epss_row["status"]) == ("2026-06-26", 4, "stale")
    assert (epss_row["documents_held"], epss_row["rows_held"]) == (1, 2)
    assert (osv_row["newest_document"], osv_row["age_days"], osv_row["status"], osv_row["rows_held"]) == (
        "USN-7000-1", 15, "fresh", 1)
    # vulnrichment: the CISA ADP container's dateUpdated 2026-06-29, 1 day before as-of (<= 30).
    vulnrichment_row = rows["vulnrichment"]
    assert (vulnrichment_row["newest_document"], vulnrichment_row["age_days"], vulnrichment_row["status"],
            vulnrichment_row["documents_held"], vulnrichment_row["rows_held"]) == ("CVE-2026-0001", 1, "fresh", 1, 1)
    assert kev_row["pending_documents"] is None
    for row in rows.values():
        assert row["last_ingest_at"] is not None and row["last_new_data_at"] is not None
        assert row["last_ingest_run"] == result.run_id
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    fresh = checks["bulletin_channels_fresh"]
    assert fresh.passed is False and fresh.severity == dg.AssetCheckSeverity.WARN
    assert [c["channel"] for c in fresh.metadata["stale_channels"].value] == ["epss", "msrc"]
    assert checks["msrc_months_ingested"].passed is False
    assert checks["msrc_months_ingested"].metadata["count"].value == 3
    comment = conn.execute(
        "SELECT comment FROM duckdb_columns() WHERE table_name = 'bulletin_channels' AND column_name = 'stale'"
    ).fetchall()[0][0]
    assert comment.startswith("True when the channel holds nothing")

    # A second run reads nothing new: last_ingest_at moves, last_new_data_at does not.
    first = {c: (r["last_ingest_at"], r["last_new_data_at"]) for c, r in rows.items()}
    conn.close()
    result, conn = run(tmp_path, estate)
    again = channels(conn)
    for channel, (ingest_at, new_data_at) in first.items():
        assert again[channel]["last_ingest_at"] > ingest_at
        assert again[channel]["last_new_data_at"] == new_data_at
        assert again[channel]["last_ingest_run"] == result.run_id


def test_empty_estate_and_configured_channels(tmp_path):
    (tmp_path / "estate").mkdir()
    result, conn = run(tmp_path, tmp_path / "estate", bulletin_watch=BulletinWatch(channels="msrc, KEV"))
    assert result.success
    rows = channels(conn)
    assert list(rows) == ["kev", "msrc"]
    assert {(r["status"], r["stale"], r["documents_held"], r["pending_documents"]) for r in rows.values()} == {
        ("empty", True, 0, None)}
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    # The KEV ingest's own check: no KEV file in the estate, so nothing is expected of the table.
    assert checks == {"bulletin_channels_fresh": False, "msrc_months_ingested": True, "kev_catalog_not_empty": True}


def test_unknown_channel_fails_naming_the_setting(tmp_path):
    (tmp_path / "estate").mkdir()
    result, _ = run(tmp_path, tmp_path / "estate", bulletin_watch=BulletinWatch(channels="msrc,nvd"))
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "PATCHLEDGER_BULLETIN_CHANNELS names unknown channels ['nvd']" in str(failure.event_specific_data.error)


def test_live_index_is_fetched_and_saved(tmp_path, estate, json_server):
    (estate / "bulletins" / "msrc" / "updates.json").unlink()
    msrc_server = json_server(lambda path: (200, INDEX))
    result, conn = run(tmp_path, estate, [msrc_index], source="azure",
                       msrc_api=MsrcResource(base_url=f"{msrc_server.url}/cvrf/v3.0/"))
    assert result.success and msrc_server.calls == ["/cvrf/v3.0/updates"]
    assert json.loads((estate / "bulletins" / "msrc" / "updates.json").read_text()) == INDEX
    assert conn.execute("SELECT count(*), min(document_id) FROM raw.msrc_index").fetchall() == [(7, "1999-Sep")]


def test_msrc_span_comes_from_the_environment(tmp_path, estate, monkeypatch):
    # The resource as the code location configures it: PATCHLEDGER_MSRC_MONTHS through dg.EnvVar.int.
    monkeypatch.setenv("PATCHLEDGER_MSRC_MONTHS", "6")
    result, conn = run(tmp_path, estate, msrc_api=bulletin_resources()["msrc_api"], bulletin_watch=BulletinWatch())
    assert result.success
    # Span: the earlier of the first ingested month (2026-04-14) and 2026-06-30 minus 6 months
    # (2025-12-30): 2025-Jan, pending with 24 months, is out of it now.
    assert channels(conn)["msrc"]["pending_documents"] == ["2026-Apr", "2026-Jun"]


def test_msrc_scope_start():
    # 31 days a month back from 2026-03-15: 62 days = 15 (to Feb 28) + 28 (to Jan 31) + 19.
    assert MsrcResource(months=2).since(date(2026, 3, 15)) == date(2026, 1, 12)
    assert MsrcResource().include_mariner() is False
    assert MsrcResource(mariner="1").include_mariner() is True


def test_live_msrc_fetches_only_the_months_in_scope(tmp_path, json_server):
    now = datetime.now(UTC).replace(microsecond=0)

    def stamp(days_ago: int) -> str:
        return (now - timedelta(days=days_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")

    index = {"value": [
        index_entry("2026-Jun", stamp(5), stamp(5)),  # in a 1-month scope (31 days)
        index_entry("2026-May", stamp(40), stamp(40)),  # released before it
        index_entry("1999-Sep", stamp(3), stamp(3), "Mariner Release Notes"),  # Mariner: not asked for
    ]}
    june = month_doc("2026-Jun", stamp(5), stamp(5))
    server = json_server(lambda path: (200, index) if path.endswith("/updates") else (200, june))
    estate = tmp_path / "estate"
    estate.mkdir()
    result, conn = run(tmp_path, estate, [msrc_documents], source="azure",
                       msrc_api=MsrcResource(base_url=f"{server.url}/cvrf/v3.0", months=1))
    assert result.success
    assert server.calls == ["/cvrf/v3.0/updates", "/cvrf/v3.0/cvrf/2026-Jun"]
    assert (estate / "bulletins" / "msrc" / "2026-Jun.json").is_file()
    assert conn.execute("SELECT document_id, source_file FROM raw.msrc_documents").fetchall() == [
        ("2026-Jun", "bulletins/msrc/2026-Jun.json")]
    assert conn.execute("SELECT channel, live_fetch, documents_ingested FROM raw.bulletin_ingest_log").fetchall() == [
        ("msrc", True, 1)]
