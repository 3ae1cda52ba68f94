"""MSRC CVRF parsing (both forms, real January 2024 sample) and the live client."""

from __future__ import annotations

import gzip
import json
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from pipelines.sources import msrc
from pipelines.sources.bulletins import utc_timestamp
from pipelines.sources.msrc import live, parser, values

SAMPLES = Path(__file__).parents[2] / "shared" / "samples" / "msrc"
JAN_2024 = SAMPLES / "cvrf_2024-Jan.xml.gz"
INDEX = SAMPLES / "updates-index_v3.json"


def _sample(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"sample {path.name} not available")
    return path


# ---- a small, independent CVRF XML -> API JSON converter (data-sources.md 1.3-1.4) ----

_INT_ENUMS = {
    "Threat": {"Impact": 0, "Exploit Status": 1, "Severity": 3},
    "Remediation": {"Workaround": 0, "Mitigation": 1, "Vendor Fix": 2, "Known Issue": 5, "Release Notes": 6},
    "Note": {"Details": 1, "Description": 2, "FAQ": 4, "Legal Disclaimer": 5, "Other": 6, "Tag": 7, "CNA": 8},
    "Status": {"Known Affected": 3},
    "DocumentPublisher": {"Vendor": 0},
}
_ARRAYS = {"Notes", "DocumentNotes", "RevisionHistory", "ProductStatuses", "Threats",
           "CVSSScoreSets", "Remediations", "Acknowledgments", "AffectedFiles"}
_REPEATED = {"ProductID", "Vulnerability", "FullProductName", "Branch", "CWE", "Name"}
_PLAIN = {"CVE", "Supercedence", "SubType", "FixedBuild", "Ordinal", "Number", "Date", "Vector",
          "InitialReleaseDate", "CurrentReleaseDate", "Version"}


def _name(el: ET.Element) -> str:
    return el.tag.rsplit("}", 1)[-1]


def to_api_json(el: ET.Element):
    name = _name(el)
    if name in _ARRAYS:
        return [to_api_json(child) for child in el]
    if name in ("BaseScore", "TemporalScore"):
        return float(el.text)
    if name == "Status" and not len(el):
        return {"Final": 2}.get(el.text, el.text)
    if name in _PLAIN or name == "URL":
        return el.text or ""
    obj = {}
    for attr, value in el.attrib.items():
        obj[attr] = _INT_ENUMS.get(name, {}).get(value, value) if attr == "Type" else value
    if not len(el):
        if el.text and el.text.strip():
            obj["Value"] = el.text
        return obj
    for child in el:
        cname = _name(child)
        value = to_api_json(child)
        if name == "Branch" and cname in ("Branch", "FullProductName"):
            obj.setdefault("Items", []).append(value)  # JSON nests branches under Items
        elif cname in _REPEATED:
            obj.setdefault(cname, []).append(value)
        else:
            obj[cname] = value
    return obj


def test_real_january_2024_xml_parses_with_real_counts():
    parsed = parser.parse_file(_sample(JAN_2024))
    rows = parsed.rows
    assert len(rows["vulnerabilities"]) == 204
    assert len({p["product_id"] for p in rows["products"]}) == 354
    assert len(rows["products"]) == 354  # deduplicated on ProductID (502 elements)
    (doc,) = rows["documents"]
    assert doc["document_id"] == "2024-Jan"
    assert doc["document_kind"] == "security_update"
    assert doc["revision"] == "369"
    assert doc["initial_release_at"] == datetime(2024, 1, 9, 8, tzinfo=UTC)
    assert doc["current_release_at"] == datetime(2026, 6, 28, 1, 39, 56, tzinfo=UTC)
    assert all(isinstance(p["product_id"], str) for p in rows["products"])
    assert any("-" in p["product_id"] for p in rows["products"])  # composite Mariner ids kept

    fix = next(
        f for f in rows["fixes"]
        if f["cve"] == "CVE-2024-20674" and f["product_id"] == "11923"
    )
    assert fix["kb"] == "5034129"
    assert fix["supersedes"] == ["5033118"]
    assert fix["fixed_build"] == "10.0.20348.2227"
    assert fix["severity"] == "Critical"
    assert fix["impact"] == "Security Feature Bypass"
    assert fix["cvss_base"] == 8.8 and fix["cvss_temporal"] == 7.7
    assert fix["restart_required"] == "Yes"
    assert fix["sub_type"] == "Security Update"
    vuln = next(v for v in rows["vulnerabilities"] if v["cve"] == "CVE-2024-20674")
    assert vuln["exploited"] is False and vuln["publicly_disclosed"] is False
    assert vuln["latest_release_exploitability"] == "Exploitation More Likely"
    assert vuln["cwes"] == ["CWE-305"]
    # Third-party CVEs: an exploit status of only "DOS:N/A" leaves the flags unknown.
    chromium = next(v for v in rows["vulnerabilities"] if v["cve"] == "CVE-2024-0519")
    assert chromium["exploited"] is None and chromium["exploit_status_raw"] == "DOS:N/A"
    assert sum(1 for f in rows["fixes"] if f["kb"]) == 1304


def test_api_json_form_gives_identical_rows(tmp_path):
    xml_bytes = gzip.decompress(_sample(JAN_2024).read_bytes())
    api_json = to_api_json(ET.fromstring(xml_bytes))
    assert api_json["Vulnerability"][0]["Threats"][0]["Type"] in (0, 1, 3)
    json_path = tmp_path / "2024-Jan.json"
    json_path.write_text(json.dumps(api_json), encoding="utf-8")
    from_xml = parser.parse_bytes(xml_bytes)
    from_json = parser.parse_file(json_path)
    for table in ("documents", "products", "vulnerabilities", "fixes"):
        if table == "documents":
            strip = [{k: v for k, v in r.items() if k != "source_format"} for r in from_xml.rows[table]]
            assert strip == [{k: v for k, v in r.items() if k != "source_format"} for r in from_json.rows[table]]
        else:
            assert from_xml.rows[table] == from_json.rows[table], table
    # Plain XML and gzip JSON read the same way.
    (tmp_path / "a.xml").write_bytes(xml_bytes)
    (tmp_path / "b.json.gz").write_bytes(gzip.compress(json_path.read_bytes()))
    assert parser.parse_file(tmp_path / "a.xml").rows["fixes"] == from_xml.rows["fixes"]
    assert parser.parse_file(tmp_path / "b.json.gz").rows["fixes"] == from_xml.rows["fixes"]


def month(document_id="2026-Jan", title="January 2026 Security Updates", vulns=None):
    """A minimal API-JSON month document."""
    return {
        "DocumentTitle": {"Value": title},
        "DocumentTracking": {
            "Identification": {"ID": {"Value": document_id}, "Alias": {"Value": document_id}},
            "Status": 2,
            "Version": "1.0",
            "RevisionHistory": [{"Number": "1", "Date": "2026-01-13T08:00:00"}],
            "InitialReleaseDate": "2026-01-13T08:00:00",
            "CurrentReleaseDate": "2026-01-14T08:00:00Z",
        },
        "ProductTree": {"FullProductName": [{"ProductID": "11923", "Value": "Windows Server 2022"}]},
        "Vulnerability": vulns if vulns is not None else [
            {
                "CVE": "cve-2026-0001",
                "Title": {"Value": "Test"},
                "ProductStatuses": [{"ProductID": ["11923"], "Type": 3}],
                "Threats": [
                    {"Type": 3, "ProductID": ["11923"], "Description": {"Value": "Important"}},
                    {"Type": 1, "Description": {"Value": "Publicly Disclosed:Yes;Exploited:Yes;DOS:N/A;"}},
                ],
                "Remediations": [
                    {"Type": 2, "Description": {"Value": "KB5050001"}, "ProductID": ["11923"],
                     "Supercedence": "5049001; KB5048001,5047001", "RestartRequired": {"Value": "Yes"},
                     "FixedBuild": "10.0.20348.3000", "SubType": "Security Update"},
                ],
            }
        ],
    }


def test_quirks_trailing_semicolon_supersedence_list_and_upper_case_cve():
    parsed = parser.flatten_document(month())
    (vuln,) = parsed.rows["vulnerabilities"]
    assert vuln["cve"] == "CVE-2026-0001"
    assert vuln["publicly_disclosed"] is True and vuln["exploited"] is True
    (fix,) = parsed.rows["fixes"]
    assert fix["kb"] == "5050001"
    assert fix["supersedes"] == ["5047001", "5048001", "5049001"]


def test_odd_ids_mariner_pseudo_months_and_bad_months():
    assert values.document_release_month("2018-FEB", "February 2018 Security Updates")[1].month == 2
    assert values.document_release_month("2017-May-B", "May 8 2017 Security Updates")[1].day == 1
    assert values.document_release_month("1999-Sep", "Mariner Release Notes") == ("mariner_release_notes", None)
    with pytest.raises(msrc.MsrcDocumentError, match="titled"):
        parser.flatten_document(month(title="February 2026 Security Updates"))
    with pytest.raises(msrc.MsrcDocumentError, match="no vulnerabilities"):
        parser.flatten_document(month(vulns=[]))
    with pytest.raises(msrc.MsrcDocumentError, match="unrecognised"):
        values.document_release_month("Jan-2026", "January 2026 Security Updates")


# ---- live client against a mock MSRC ----


class FakeMsrc:
    def __init__(self, documents: dict[str, bytes], index: dict):
        self.documents = documents
        self.index = index
        self.failures: dict[str, list] = {}
        self.calls: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.calls.append(path)
        assert request.headers["accept"] == "application/json"
        queued = self.failures.get(path)
        if queued:
            failure = queued.pop(0)
            if failure == "timeout":
                raise httpx.ReadTimeout("slow answer", request=request)
            return httpx.Response(failure)
        if path.endswith("/updates"):
            return httpx.Response(200, json=self.index)
        document_id = path.rsplit("/", 1)[-1]
        if document_id in self.documents:
            return httpx.Response(200, content=self.documents[document_id])
        return httpx.Response(404)


def _client(fake: FakeMsrc, sleeps: list) -> live.MsrcClient:
    return live.MsrcClient(
        "https://msrc.test/cvrf/v3.0", transport=httpx.MockTransport(fake), retries=3,
        backoff_seconds=0.5, sleep=sleeps.append,
    )


def test_live_fetch_uses_real_index_retries_and_archives(tmp_path):
    index = json.loads(_sample(INDEX).read_text(encoding="utf-8"))
    jan = json.dumps(to_api_json(ET.fromstring(gzip.decompress(_sample(JAN_2024).read_bytes()))))
    fake = FakeMsrc({"2024-Jan": jan.encode()}, index)
    fake.failures["/cvrf/v3.0/cvrf/2024-Jan"] = [500, "timeout"]
    sleeps: list[float] = []
    known = {e["ID"]: utc_timestamp(e["CurrentReleaseDate"]) for e in index["value"]}
    known["2024-Jan"] = datetime(2025, 1, 1, tzinfo=UTC)  # revised since our last fetch
    archive = tmp_path / "msrc" / "archive"
    with _client(fake, sleeps) as client:
        fetched = live.fetch_changed(client, known, archive)
    assert [d.document_id for d in fetched] == ["2024-Jan"]
    assert sleeps == [0.5, 1.0]  # one 500, one timeout, then success
    assert len(fetched[0].parsed.rows["vulnerabilities"]) == 204
    archived = list(archive.glob("2024-Jan_*.json.gz"))
    assert len(archived) == 1 and fetched[0].sha256[:16] in archived[0].name
    assert (tmp_path / "msrc" / "2024-Jan.json").read_bytes() == jan.encode()


def test_changed_documents_filters_index():
    index = json.loads(_sample(INDEX).read_text(encoding="utf-8"))["value"]
    assert len(index) == 190
    everything = live.changed_documents(index, {})
    assert "2017-May-B" not in everything and len(everything) == 188
    monthly = live.changed_documents(index, {}, include_mariner=False)
    assert len(monthly) == 188 - 64 + 0 and "1999-Sep" not in monthly


def test_live_empty_month_is_an_error_and_writes_nothing(tmp_path):
    index = {"value": [{"ID": "2026-Jan", "DocumentTitle": "January 2026 Security Updates",
                        "InitialReleaseDate": "2026-01-13T08:00:00Z", "CurrentReleaseDate": "2026-02-01T00:00:00Z"}]}
    fake = FakeMsrc({"2026-Jan": json.dumps(month(vulns=[])).encode()}, index)
    with _client(fake, []) as client, pytest.raises(msrc.MsrcDocumentError, match="no vulnerabilities"):
        live.fetch_changed(client, {}, tmp_path / "archive")
    assert not (tmp_path / "archive").exists()


def test_live_gives_up_after_retries(tmp_path):
    fake = FakeMsrc({}, {"value": []})
    fake.failures["/cvrf/v3.0/updates"] = ["timeout"] * 5
    sleeps: list[float] = []
    with _client(fake, sleeps) as client, pytest.raises(httpx.ReadTimeout):
        client.index()
    assert sleeps == [0.5, 1.0, 2.0]


def test_live_client_waits_what_retry_after_says():
    fake = FakeMsrc({}, {"value": [{"ID": "2026-Jan"}]})
    answers = [httpx.Response(429, headers={"Retry-After": "12"}), httpx.Response(503, headers={"Retry-After": "3"})]

    def throttled(request: httpx.Request) -> httpx.Response:
        return answers.pop(0) if answers else fake(request)

    sleeps: list[float] = []
    client = live.MsrcClient("https://msrc.test/cvrf/v3.0", transport=httpx.MockTransport(throttled),
                             retries=3, backoff_seconds=0.5, sleep=sleeps.append)
    with client:
        assert client.index() == [{"ID": "2026-Jan"}]
    assert sleeps == [12.0, 3.0]  # the server's Retry-After, not the 0.5 / 1.0 backoff
