"""Live download of KEV, EPSS, OSV and CISA Vulnrichment against a local HTTP server.

One http.server on 127.0.0.1 plays every channel; each test points the channel's base URL
variable (PATCHLEDGER_KEV_URL, ...) at it. Nothing here reaches the internet.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import threading
from datetime import UTC, date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from pipelines.connectors import http
from pipelines.resources import RunSettings, WarehouseResource
from pipelines.sources import epss, kev, osv, vulnrichment
from pipelines.sources.bulletins.resource import bulletin_resources
from pipelines.sources.epss.assets import epss_scores
from pipelines.sources.epss.live import fetch_daily
from pipelines.sources.epss.reader import read_epss
from pipelines.sources.kev.assets import kev_vulnerabilities
from pipelines.sources.kev.live import fetch_catalog
from pipelines.sources.kev.reader import read_kev
from pipelines.sources.msrc.assets import msrc_documents
from pipelines.sources.osv.assets import osv_advisories
from pipelines.sources.osv.live import fetch_advisories
from pipelines.sources.vulnrichment.assets import vulnrichment_ssvc
from pipelines.sources.vulnrichment.live import fetch_records
from pipelines.sources.vulnrichment.reader import parse_record

KEV_FEED = {
    "title": "CISA Catalog of Known Exploited Vulnerabilities", "catalogVersion": "2026.11.30",
    "dateReleased": "2026-11-30T17:04:19.9796Z", "count": 1,
    "vulnerabilities": [{"cveID": "CVE-2026-21412", "vendorProject": "Microsoft", "product": "Windows",
                         "vulnerabilityName": "Windows Bypass", "dateAdded": "2026-11-28",
                         "shortDescription": "x", "requiredAction": "Apply updates", "dueDate": "2026-12-19",
                         "knownRansomwareCampaignUse": "Unknown", "notes": "", "cwes": ["CWE-693"]}],
}
EPSS_TEXT = (
    b"#model_version:v2025.03.14,score_date:2026-11-29T12:55:00Z\ncve,epss,percentile\n"
    b"CVE-2026-21412,0.91234,0.99871\nCVE-2026-50010,0.00042,0.11000\n"
)
EPSS_DAY = gzip.compress(EPSS_TEXT, mtime=0)


def usn(advisory_id: str, modified: str, cve: str, fixed: str) -> dict:
    return {"id": advisory_id, "modified": modified, "published": "2026-11-20T00:00:00Z", "upstream": [cve],
            "severity": [{"type": "Ubuntu", "score": "high"}],
            "affected": [{"package": {"ecosystem": "Ubuntu:22.04:LTS", "name": "openssl"},
                          "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}],
                          "ecosystem_specific": {"binaries": [{"binary_name": "libssl3", "binary_version": fixed}]}}]}


def cve_record(cve: str, options: list[dict], updated: str = "2026-11-29T10:00:00.000Z") -> dict:
    return {"dataType": "CVE_RECORD", "dataVersion": "5.1",
            "cveMetadata": {"cveId": cve, "state": "PUBLISHED", "dateUpdated": updated},
            "containers": {"cna": {}, "adp": [
                {"title": "CVE Program Container", "providerMetadata": {"shortName": "CVE"}},
                {"title": "CISA ADP Vulnrichment", "providerMetadata": {"shortName": "CISA-ADP", "dateUpdated": updated},
                 "metrics": [{"other": {"type": "ssvc", "content": {
                     "timestamp": updated, "id": cve, "role": "CISA Coordinator", "version": "2.0.3",
                     "options": options}}}]}]}}


class Server(BaseHTTPRequestHandler):
    """Routes: path -> list of answers (status, headers, body), the last one repeated."""

    routes: dict[str, list[tuple[int, dict, bytes]]] = {}
    requests: list[tuple[str, str, dict, bytes]] = []

    def _answer(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        Server.requests.append((method, self.path, dict(self.headers), body))
        answers = Server.routes.get(f"{method} {self.path}") or [(404, {}, b"not found")]
        status, headers, payload = answers.pop(0) if len(answers) > 1 else answers[0]
        if callable(payload):
            status, headers, payload = payload(self.headers, body)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self):  # noqa: N802 (http.server's name)
        self._answer("GET")

    def do_POST(self):  # noqa: N802
        self._answer("POST")

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    Server.routes, Server.requests = {}, []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Server)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def client(url: str, sleeps: list | None = None) -> http.ChannelClient:
    return http.ChannelClient(url, retries=3, backoff_seconds=0.5,
                              sleep=(sleeps.append if sleeps is not None else lambda s: None))


def etag_answer(body: bytes, etag: str):
    """200 with an ETag, or 304 when the request already carries it."""
    def answer(headers, _):
        if headers.get("If-None-Match") == etag:
            return 304, {"ETag": etag}, b""
        return 200, {"ETag": etag, "Content-Type": "application/json"}, body
    return answer


# ---- the shared client ----


def test_retry_after_seconds_and_http_date():
    now = datetime(2026, 12, 1, 7, 28, 0, tzinfo=UTC)
    assert http.retry_after_seconds("120") == 120.0
    assert http.retry_after_seconds("Tue, 01 Dec 2026 07:28:30 GMT", now=lambda: now) == 30.0
    assert http.retry_after_seconds("Tue, 01 Dec 2026 07:27:00 GMT", now=lambda: now) == 0.0
    assert http.retry_after_seconds("soon") is None and http.retry_after_seconds(None) is None


def test_client_waits_what_retry_after_says_then_backs_off(server):
    Server.routes["GET /x"] = [(429, {"Retry-After": "7"}, b""), (503, {}, b""), (200, {}, b"ok")]
    sleeps: list[float] = []
    with client(server, sleeps) as c:
        assert c.get("/x").content == b"ok"
    # 7 s from Retry-After, then the second backoff step (0.5 * 2) with no header.
    assert sleeps == [7.0, 1.0]


def test_client_gives_up_after_retries_naming_the_url(server):
    Server.routes["GET /down"] = [(502, {}, b"")]
    with client(server) as c, pytest.raises(Exception, match=r"502 from http://127\.0\.0\.1:\d+/down"):
        c.get("/down")
    assert len([r for r in Server.requests if r[1] == "/down"]) == 4  # 1 + 3 retries


def test_endpoints_come_from_the_environment(monkeypatch):
    for module in (kev, epss, osv, vulnrichment):
        monkeypatch.delenv(module.URL_ENV, raising=False)
    monkeypatch.setenv(kev.URL_ENV, "http://mirror.example/feeds/")
    configured = bulletin_resources()
    # Set: an EnvVar, resolved at launch (the value never enters the run's configuration).
    assert isinstance(configured["kev_feed"].base_url, dg.EnvVar)
    assert configured["kev_feed"].base_url.env_var_name == "PATCHLEDGER_KEV_URL"
    # Unset: the public service.
    assert configured["epss_feed"].base_url == "https://epss.empiricalsecurity.com"
    assert configured["osv_api"].base_url == "https://api.osv.dev"
    assert configured["vulnrichment_feed"].base_url == "https://raw.githubusercontent.com/cisagov/vulnrichment/develop"


# ---- each channel's client ----


def test_kev_feed_conditional_request_and_archive(server, tmp_path):
    body = json.dumps(KEV_FEED).encode()
    Server.routes["GET /known_exploited_vulnerabilities.json"] = [(200, {}, etag_answer(body, '"v1"'))]
    folder = tmp_path / "kev"
    with client(server) as c:
        first = fetch_catalog(c, folder)
        second = fetch_catalog(c, folder)
    assert first == folder / "known_exploited_vulnerabilities_2026.11.30.json"
    assert first.read_bytes() == body and second is None  # the second answer was 304
    assert Server.requests[1][2].get("If-None-Match") == '"v1"'
    sha = hashlib.sha256(body).hexdigest()
    archived = folder / "archive" / f"known_exploited_vulnerabilities_2026.11.30_{sha[:16]}.json.gz"
    assert gzip.decompress(archived.read_bytes()) == body
    # The file reads offline like any KEV snapshot.
    with duckdb.connect() as conn:
        assert read_kev(conn, first).column("cve").to_pylist() == ["CVE-2026-21412"]


def test_kev_bad_answer_writes_nothing(server, tmp_path):
    bad = dict(KEV_FEED, count=5)
    Server.routes["GET /known_exploited_vulnerabilities.json"] = [(200, {}, json.dumps(bad).encode())]
    with client(server) as c, pytest.raises(kev.KevFileError, match="field count: catalog says count=5 but lists 1"):
        fetch_catalog(c, tmp_path / "kev")
    assert not (tmp_path / "kev").exists()


def test_epss_newest_daily_file_by_explicit_date(server, tmp_path):
    # 2026-12-01 and 2026-11-30 are not published yet; 2026-11-29 is.
    Server.routes["GET /epss_scores-2026-11-29.csv.gz"] = [(200, {"Content-Type": "application/gzip"}, EPSS_DAY)]
    folder = tmp_path / "epss"
    with client(server) as c:
        path = fetch_daily(c, folder, date(2026, 12, 1))
        again = fetch_daily(c, folder, date(2026, 11, 29))
    assert path == folder / "epss_scores-2026-11-29.csv.gz" and path.read_bytes() == EPSS_DAY
    assert again is None  # the day is held: not asked again
    assert [r[1] for r in Server.requests] == [
        "/epss_scores-2026-12-01.csv.gz", "/epss_scores-2026-11-30.csv.gz", "/epss_scores-2026-11-29.csv.gz"]
    with duckdb.connect() as conn:
        rows = read_epss(conn, path).to_pylist()
    assert rows[0] == {"cve": "CVE-2026-21412", "epss": 0.91234, "percentile": 0.99871,
                       "model_version": "v2025.03.14", "score_date": date(2026, 11, 29)}


def test_osv_querybatch_pages_and_fetches_only_new_or_modified(server, tmp_path):
    def querybatch(_, body):
        queries = json.loads(body)["queries"]
        results = []
        for q in queries:
            if q["package"]["name"] == "libssl3" and "page_token" not in q:
                results.append({"vulns": [{"id": "USN-7100-1", "modified": "2026-11-21T00:00:00Z"}],
                                "next_page_token": "p2"})
            elif q["package"]["name"] == "libssl3":
                results.append({"vulns": [{"id": "USN-7000-1", "modified": "2026-10-01T00:00:00Z"}]})
            else:
                results.append({})
        return 200, {"Content-Type": "application/json"}, json.dumps({"results": results}).encode()

    Server.routes["POST /v1/querybatch"] = [(200, {}, querybatch)]
    new = json.dumps(usn("USN-7100-1", "2026-11-21T00:00:00Z", "CVE-2026-50010", "3.0.2-0ubuntu1.19")).encode()
    Server.routes["GET /v1/vulns/USN-7100-1"] = [(200, {}, new)]
    folder = tmp_path / "osv"
    known = {"USN-7000-1": datetime(2026, 10, 1, tzinfo=UTC)}  # held at its current `modified`
    with client(server) as c:
        counts = fetch_advisories(c, [("Ubuntu:22.04:LTS", "libssl3"), ("Ubuntu:22.04:LTS", "curl")], known, folder)
    assert counts == {"listed": 2, "fetched": 1, "unchanged": 1}
    first, second = (json.loads(r[3]) for r in Server.requests if r[1] == "/v1/querybatch")
    assert first == {"queries": [{"package": {"ecosystem": "Ubuntu:22.04:LTS", "name": "curl"}},
                                 {"package": {"ecosystem": "Ubuntu:22.04:LTS", "name": "libssl3"}}]}
    assert second == {"queries": [{"package": {"ecosystem": "Ubuntu:22.04:LTS", "name": "libssl3"}, "page_token": "p2"}]}
    assert not any(r[1] == "/v1/vulns/USN-7000-1" for r in Server.requests)
    assert (folder / "osv.dev" / "USN-7100-1.json").read_bytes() == new
    assert osv.osv_files(folder) == [folder / "osv.dev" / "USN-7100-1.json"]  # the archive is not read


def test_vulnrichment_records_by_repository_path(server, tmp_path):
    record = json.dumps(cve_record("CVE-2026-21412", [
        {"Exploitation": "active"}, {"Automatable": "yes"}, {"Technical Impact": "total"}])).encode()
    Server.routes["GET /2026/21xxx/CVE-2026-21412.json"] = [(200, {}, etag_answer(record, '"r1"'))]
    folder = tmp_path / "vulnrichment"
    with client(server) as c:
        assert fetch_records(c, ["cve-2026-21412", "CVE-2026-50010"], folder) == {
            "fetched": 1, "unchanged": 0, "absent": 1}
        assert fetch_records(c, ["CVE-2026-21412"], folder) == {
            "fetched": 0, "unchanged": 1, "absent": 0}
    assert (folder / "2026" / "21xxx" / "CVE-2026-21412.json").read_bytes() == record
    assert "/2026/50xxx/CVE-2026-50010.json" in [r[1] for r in Server.requests]  # 404: not enriched
    assert vulnrichment.record_files(folder) == [folder / "2026" / "21xxx" / "CVE-2026-21412.json"]


def test_record_paths_follow_the_repository_layout():
    assert vulnrichment.record_path("CVE-2024-21412") == "2024/21xxx/CVE-2024-21412.json"
    assert vulnrichment.record_path("CVE-2021-3156") == "2021/3xxx/CVE-2021-3156.json"
    assert vulnrichment.record_path("CVE-2024-0001") == "2024/0xxx/CVE-2024-0001.json"
    assert vulnrichment.record_path("cve-2025-1234567") == "2025/1234xxx/CVE-2025-1234567.json"


# ---- strict Vulnrichment parsing ----


def test_vulnrichment_parse_reads_the_cisa_container():
    data = json.dumps(cve_record("CVE-2026-21412", [
        {"Exploitation": "poc"}, {"Automatable": "no"}, {"Technical Impact": "partial"}])).encode()
    row = parse_record(data, "bulletins/vulnrichment/2026/21xxx/CVE-2026-21412.json")
    assert (row["cve"], row["exploitation"], row["automatable"], row["technical_impact"], row["ssvc_version"]) == (
        "CVE-2026-21412", "poc", "no", "partial", "2.0.3")
    assert row["ssvc_timestamp"] == datetime(2026, 11, 29, 10, 0, tzinfo=UTC)
    without = cve_record("CVE-2026-21412", [])
    without["containers"]["adp"] = without["containers"]["adp"][:1]  # no CISA container
    row = parse_record(json.dumps(without).encode(), "CVE-2026-21412.json")
    assert (row["automatable"], row["technical_impact"]) == (None, None)


@pytest.mark.parametrize("record, name, message", [
    (cve_record("CVE-2026-21412", [{"Automatable": "maybe"}]), "v/2026/21xxx/CVE-2026-21412.json",
     r"v/2026/21xxx/CVE-2026-21412\.json: adp\[CISA ADP Vulnrichment\]\.metrics\[0\]\.other\.content"
     r"\.options\.Automatable: unknown value 'maybe' \(known: yes, no\)"),
    (cve_record("CVE-2026-21412", [{"Mission Impact": "low"}]), "CVE-2026-21412.json",
     r"CVE-2026-21412\.json: .*options: unknown decision point 'Mission Impact'"),
    (cve_record("CVE-2026-21413", []), "CVE-2026-21412.json",
     r"cveMetadata\.cveId: 'CVE-2026-21413' is not the CVE the file is named for"),
    ({"dataType": "OSV"}, "CVE-2026-21412.json", r"dataType: 'OSV' is not 'CVE_RECORD'"),
    (cve_record("CVE-2026-21412", [], updated="yesterday"), "CVE-2026-21412.json",
     r"cveMetadata\.dateUpdated: 'yesterday' is not an ISO 8601 timestamp"),
])
def test_vulnrichment_bad_records_name_file_element_and_value(record, name, message):
    with pytest.raises(vulnrichment.VulnrichmentError, match=message):
        parse_record(json.dumps(record).encode(), name)


# ---- the assets in live mode: fetched into the estate, then ingested like offline files ----


@pytest.fixture
def warehouse(tmp_path: Path) -> Path:
    """One Ubuntu 22.04 machine on which libssl3 was observed (what the OSV fetch asks about)."""
    path = tmp_path / "w.duckdb"
    with duckdb.connect(str(path)) as conn:
        conn.execute("CREATE SCHEMA marts; CREATE SCHEMA staging")
        conn.execute("CREATE TABLE marts.vm_inventory AS SELECT 'vm1' AS vm_id, 'Ubuntu' AS os_name, "
                     "'22.04' AS os_version, 'Linux' AS os_type")
        conn.execute("CREATE TABLE staging.patch_observations AS SELECT 'vm1' AS vm_id, "
                     "'libssl3_3.0.2-0ubuntu1.19' AS patch_key, NULL::VARCHAR AS kb")
    return path


def test_assets_fetch_every_channel_live_and_replay_offline(server, tmp_path, warehouse, monkeypatch):
    # The endpoints as the code location configures them, from the environment (a trailing
    # slash is tolerated).
    for module in (kev, epss, osv, vulnrichment):
        monkeypatch.setenv(module.URL_ENV, server + "/")
    today = datetime.now(UTC).date().isoformat()
    day = gzip.compress(EPSS_TEXT.replace(b"2026-11-29T12:55:00Z", f"{today}T12:55:00Z".encode()))
    Server.routes[f"GET /epss_scores-{today}.csv.gz"] = [(200, {}, day)]
    Server.routes["GET /known_exploited_vulnerabilities.json"] = [(200, {}, json.dumps(KEV_FEED).encode())]
    Server.routes["POST /v1/querybatch"] = [(200, {}, json.dumps(
        {"results": [{"vulns": [{"id": "USN-7100-1", "modified": "2026-11-21T00:00:00Z"}]}]}).encode())]
    Server.routes["GET /v1/vulns/USN-7100-1"] = [(200, {}, json.dumps(
        usn("USN-7100-1", "2026-11-21T00:00:00Z", "CVE-2026-21412", "3.0.2-0ubuntu1.19")).encode())]
    Server.routes["GET /2026/21xxx/CVE-2026-21412.json"] = [(200, {}, json.dumps(cve_record("CVE-2026-21412", [
        {"Exploitation": "active"}, {"Automatable": "no"}, {"Technical Impact": "total"}])).encode())]
    estate = tmp_path / "estate"
    assets = [msrc_documents, kev_vulnerabilities, epss_scores,
              osv_advisories, vulnrichment_ssvc]

    def materialize(source: str) -> dg.ExecuteInProcessResult:
        return dg.materialize(assets, resources={
            "warehouse": WarehouseResource(database=str(warehouse)),
            "run_settings": RunSettings(estate_dir=str(estate), source=source),
            **bulletin_resources()}, raise_on_error=False)

    # MSRC's live fetch is covered by test_msrc; here it has an empty index.
    Server.routes["GET /updates"] = [(200, {}, b'{"value": []}')]
    monkeypatch.setenv("PATCHLEDGER_MSRC_URL", server)
    assert materialize("azure").success
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        assert conn.execute("SELECT cve, catalog_version, source_file FROM raw.kev_vulnerabilities").fetchall() == [
            ("CVE-2026-21412", "2026.11.30", "bulletins/kev/known_exploited_vulnerabilities_2026.11.30.json")]
        assert conn.execute("SELECT count(*), any_value(score_date) FROM raw.epss_scores").fetchall() == [
            (2, date.fromisoformat(today))]
        assert conn.execute("SELECT advisory_id, source_file FROM raw.osv_advisories").fetchall() == [
            ("USN-7100-1", "bulletins/osv/osv.dev/USN-7100-1.json")]
        assert conn.execute("SELECT cve, automatable, technical_impact, source_file FROM raw.vulnrichment_ssvc").fetchall() == [
            ("CVE-2026-21412", "no", "total", "bulletins/vulnrichment/2026/21xxx/CVE-2026-21412.json")]
        live = conn.execute("SELECT channel, live_fetch, documents_ingested FROM raw.bulletin_ingest_log "
                            "WHERE channel <> 'msrc' ORDER BY channel").fetchall()
    assert live == [("epss", True, 1), ("kev", True, 1), ("osv", True, 1), ("vulnrichment", True, 1)]
    # The Vulnrichment fetch asked about the CVEs the other channels named.
    asked = sorted(r[1] for r in Server.requests if r[1].startswith("/2026/"))
    assert asked == ["/2026/21xxx/CVE-2026-21412.json"]

    # Offline replay of the same estate: nothing is fetched, nothing new is ingested.
    fetched = len(Server.requests)
    assert materialize("files").success
    assert len(Server.requests) == fetched
