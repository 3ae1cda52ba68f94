"""OSV advisories (Ubuntu USN / Debian DSA style, handmade) -> raw, staging.osv_fixes, catalog."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from assets import bulletins
from pipelines.resources import RunSettings, WarehouseResource
from pipelines.sources import osv
from pipelines.sources.bulletins.resource import bulletin_resources
from pipelines.sources.epss.assets import epss_scores
from pipelines.sources.kev.assets import kev_vulnerabilities
from pipelines.sources.msrc.assets import msrc_documents
from pipelines.sources.osv.assets import osv_advisories
from pipelines.sources.osv.reader import flatten_advisory, parse_bytes

CATALOG = [
    msrc_documents, kev_vulnerabilities, epss_scores,
    osv_advisories, bulletins.osv_fixes, bulletins.msrc_fixes,
    bulletins.patch_supersedence, bulletins.patch_fix_lineage, bulletins.patch_cves,
    bulletins.patch_catalog,  # with its patch_catalog_key_unique check
]
HIGH_AVAILABILITY = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H"  # 7.5
CRITICAL = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"  # 9.8


def usn(modified: str = "2024-09-03T13:53:40Z", related: list[str] | None = None) -> dict:
    """Ubuntu USN shape: CVEs in `related`, Ubuntu priority, binaries in ecosystem_specific."""
    return {
        "schema_version": "1.6.3",
        "id": "USN-6986-1",
        "summary": "openssl vulnerabilities",
        "details": "It was discovered that OpenSSL incorrectly handled certain names.",
        "aliases": [],
        "related": related or ["CVE-2024-5535", "CVE-2024-6119", "UBUNTU-CVE-2024-6119"],
        "published": "2024-09-03T13:53:40Z",
        "modified": modified,
        "affected": [{
            "package": {"ecosystem": "Ubuntu:22.04:LTS", "name": "openssl",
                        "purl": "pkg:deb/ubuntu/openssl@3.0.2-0ubuntu1.15?arch=source&distro=jammy"},
            "ranges": [{"type": "ECOSYSTEM",
                        "events": [{"introduced": "0"}, {"fixed": "3.0.2-0ubuntu1.15"}]}],
            "versions": ["3.0.2-0ubuntu1", "3.0.2-0ubuntu1.14"],
            "ecosystem_specific": {"binaries": [
                {"binary_name": "libssl-dev", "binary_version": "3.0.2-0ubuntu1.15"},
                {"binary_name": "libssl3", "binary_version": "3.0.2-0ubuntu1.15"},
                {"binary_name": "openssl", "binary_version": "3.0.2-0ubuntu1.15"},
            ]},
        }],
        "references": [{"type": "REPORT", "url": "https://launchpad.net/bugs/1"},
                       {"type": "ADVISORY", "url": "https://ubuntu.com/security/notices/USN-6986-1"}],
        "severity": [{"type": "Ubuntu", "score": "medium"}, {"type": "CVSS_V3", "score": HIGH_AVAILABILITY}],
    }


def debian_array() -> list[dict]:
    """A JSON array: a Debian DSA (CVEs in `upstream`, no severity), a Debian CVE record with a
    CVSS vector only, and a withdrawn advisory."""
    return [
        {
            "id": "DSA-5764-1",
            "summary": "openssl - security update",
            "upstream": ["CVE-2024-6119"],
            "published": "2024-09-03T00:00:00Z",
            "modified": "2024-09-04T10:00:00Z",
            "affected": [{"package": {"ecosystem": "Debian:12", "name": "openssl"},
                          "ranges": [{"type": "ECOSYSTEM",
                                      "events": [{"introduced": "0"}, {"fixed": "3.0.14-1~deb12u2"}]}]}],
        },
        {
            "id": "DEBIAN-CVE-2024-9999",
            "aliases": ["CVE-2024-9999"],
            "published": "2024-09-10T00:00:00Z",
            "modified": "2024-09-11T00:00:00Z",
            "severity": [{"type": "CVSS_V3", "score": CRITICAL}],
            "affected": [{"package": {"ecosystem": "Debian:12", "name": "curl"},
                          "ranges": [{"type": "ECOSYSTEM", "events": [
                              {"introduced": "0"}, {"fixed": "7.88.1-10+deb12u7"},
                              {"introduced": "8.0.0"}]}]}],
        },
        {
            "id": "DSA-0000-1",
            "aliases": ["CVE-2024-0001"],
            "modified": "2024-09-12T00:00:00Z",
            "withdrawn": "2024-09-12T00:00:00Z",
            "affected": [{"package": {"ecosystem": "Debian:12", "name": "zlib"},
                          "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.2.13"}]}]}],
        },
    ]


KEV_CSV = (
    "cveID,vendorProject,product,vulnerabilityName,dateAdded,shortDescription,requiredAction,"
    "dueDate,knownRansomwareCampaignUse,notes,cwes\n"
    "CVE-2024-6119,OpenSSL,OpenSSL,OpenSSL Type Confusion,2024-09-10,desc,Apply updates,"
    "2024-10-01,Unknown,,CWE-843\n"
)


@pytest.fixture
def estate(tmp_path: Path) -> Path:
    root = tmp_path / "estate"
    (root / "bulletins" / "osv" / "ubuntu").mkdir(parents=True)
    (root / "bulletins" / "kev").mkdir(parents=True)
    (root / "bulletins" / "osv" / "ubuntu" / "USN-6986-1.json").write_text(json.dumps(usn()))
    (root / "bulletins" / "osv" / "debian.json.gz").write_bytes(gzip.compress(json.dumps(debian_array()).encode()))
    (root / "bulletins" / "kev" / "known_exploited_vulnerabilities.csv").write_text(KEV_CSV)
    return root


def run(tmp_path: Path, estate: Path) -> tuple[dg.ExecuteInProcessResult, duckdb.DuckDBPyConnection]:
    database = tmp_path / "w.duckdb"
    result = dg.materialize(
        CATALOG,
        resources={
            **bulletin_resources(),
            "warehouse": WarehouseResource(database=str(database)),
            "run_settings": RunSettings(estate_dir=str(estate), as_of="2024-09-30"),
        },
        raise_on_error=False,
    )
    return result, duckdb.connect(str(database), read_only=True)


def test_flatten_ubuntu_record():
    advisory, affected = flatten_advisory(usn(), "USN-6986-1.json")
    assert advisory["cves"] == ["CVE-2024-5535", "CVE-2024-6119"]
    assert advisory["cvss_type"] == "CVSS_V3" and advisory["cvss_base"] == 7.5
    assert advisory["vendor_severity"] == "medium"
    assert advisory["advisory_url"] == "https://ubuntu.com/security/notices/USN-6986-1"
    assert sorted((r["package"], r["package_kind"], r["fixed_version"]) for r in affected) == [
        ("libssl-dev", "binary", "3.0.2-0ubuntu1.15"),
        ("libssl3", "binary", "3.0.2-0ubuntu1.15"),
        ("openssl", "source", "3.0.2-0ubuntu1.15"),
    ]


def test_unfixed_range_and_bad_records():
    _, affected = flatten_advisory(debian_array()[1], "debian.json[1]")
    assert [(r["introduced"], r["fixed_version"]) for r in affected] == [("0", "7.88.1-10+deb12u7"), ("8.0.0", None)]
    with pytest.raises(osv.OsvAdvisoryError, match=r"bad\.json \(X-1\): affected\[0\]\.package needs ecosystem and name"):
        flatten_advisory({"id": "X-1", "modified": "2024-01-01T00:00:00Z",
                              "affected": [{"package": {"ecosystem": "Debian:12"}}]}, "bad.json")
    with pytest.raises(osv.OsvAdvisoryError, match="field 'modified' is missing"):
        flatten_advisory({"id": "X-2"}, "bad.json")


def test_osv_fixes_fold_into_catalog_with_kev(tmp_path, estate):
    result, conn = run(tmp_path, estate)
    assert result.success
    assert conn.execute("SELECT count(*) FROM raw.osv_advisories").fetchall() == [(4,)]
    # USN: 3 package rows; DSA: 1; Debian curl: fixed + open range = 2; withdrawn zlib: 1.
    assert conn.execute("SELECT count(*) FROM raw.osv_affected").fetchall() == [(7,)]
    fixes = conn.execute(
        "SELECT advisory_id, cve, ecosystem, package, fixed_version, severity, severity_source "
        "FROM staging.osv_fixes WHERE patch_key IS NOT NULL ORDER BY ALL").fetchall()
    assert ("USN-6986-1", "CVE-2024-6119", "Ubuntu:22.04:LTS", "libssl3", "3.0.2-0ubuntu1.15", "Moderate", "vendor") in fixes
    assert ("DSA-5764-1", "CVE-2024-6119", "Debian:12", "openssl", "3.0.14-1~deb12u2", None, None) in fixes
    assert ("DEBIAN-CVE-2024-9999", "CVE-2024-9999", "Debian:12", "curl", "7.88.1-10+deb12u7", "Critical", "cvss") in fixes
    assert len(fixes) == 2 * 3 + 1 + 1  # two CVEs x three USN packages, the DSA, the curl fix
    assert not any(f[0] == "DSA-0000-1" for f in fixes)  # withdrawn
    assert conn.execute(
        "SELECT distribution, distribution_release FROM staging.osv_fixes WHERE advisory_id = 'USN-6986-1' LIMIT 1"
    ).fetchall() == [("Ubuntu", "22.04")]

    row = conn.execute(
        "SELECT kb, title, classification, max_severity, max_cvss, in_kev, kev_due_date::VARCHAR, cves, "
        "product_ids, document_ids, remediation_url, sources, released_at::VARCHAR "
        "FROM marts.patch_catalog WHERE patch_key = 'openssl_3.0.2-0ubuntu1.15'").fetchall()
    assert row == [(None, "openssl 3.0.2-0ubuntu1.15", "Security", "Moderate", 7.5, True, "2024-10-01",
                    ["CVE-2024-5535", "CVE-2024-6119"], ["Ubuntu:22.04:LTS"], ["USN-6986-1"],
                    "https://ubuntu.com/security/notices/USN-6986-1", ["osv"], "2024-09-03 13:53:40+00")]
    assert conn.execute(
        "SELECT max_severity, max_cvss, in_kev FROM marts.patch_catalog WHERE patch_key = 'curl_7.88.1-10+deb12u7'"
    ).fetchall() == [("Critical", 9.8, False)]
    assert conn.execute(
        "SELECT count(*) FROM marts.patch_catalog WHERE patch_key LIKE 'libssl%_3.0.2-0ubuntu1.15'").fetchall() == [(2,)]
    assert conn.execute("SELECT count(*) FROM marts.patch_catalog WHERE patch_key LIKE 'zlib%'").fetchall() == [(0,)]
    cves = conn.execute(
        "SELECT cve, product, source, in_kev FROM marts.patch_cves WHERE patch_key = 'openssl_3.0.14-1~deb12u2'"
    ).fetchall()
    assert cves == [("CVE-2024-6119", "openssl on Debian:12", "osv", True)]
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["patch_catalog_key_unique"]


def test_revisions_replace_older_are_ignored_and_bad_files_keep_rows(tmp_path, estate):
    result, conn = run(tmp_path, estate)
    assert result.success
    conn.close()
    folder = estate / "bulletins" / "osv"
    # An older revision of the USN in a second file is ignored ...
    (folder / "old.json").write_text(json.dumps(usn(modified="2024-08-01T00:00:00Z", related=["CVE-2020-0001"])))
    # ... a newer one (an added CVE) replaces it.
    (folder / "ubuntu" / "USN-6986-1.json").write_text(
        json.dumps(usn(modified="2024-09-20T00:00:00Z", related=["CVE-2024-5535", "CVE-2024-6119", "CVE-2024-9143"])))
    result, conn = run(tmp_path, estate)
    assert result.success
    assert conn.execute(
        "SELECT cves, modified_at::VARCHAR FROM raw.osv_advisories WHERE advisory_id = 'USN-6986-1'"
    ).fetchall() == [(["CVE-2024-5535", "CVE-2024-6119", "CVE-2024-9143"], "2024-09-20 00:00:00+00")]
    assert conn.execute(
        "SELECT cve_count FROM marts.patch_catalog WHERE patch_key = 'openssl_3.0.2-0ubuntu1.15'").fetchall() == [(3,)]
    log = conn.execute(
        "SELECT files_seen, files_skipped, documents_ingested FROM raw.bulletin_ingest_log "
        "WHERE channel = 'osv' ORDER BY ingested_at").fetchall()
    assert log == [(2, 0, 4), (3, 1, 1)]  # second run: debian.json.gz unchanged, old.json ignored
    conn.close()
    (folder / "broken.json").write_text(json.dumps([{"id": "BAD-1", "modified": "2024-09-25T00:00:00Z",
                                                     "affected": [{"package": {"name": "x"}}]}]))
    result, conn = run(tmp_path, estate)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "broken.json[0] (BAD-1): affected[0].package needs ecosystem and name" in str(failure.event_specific_data.error)
    assert conn.execute("SELECT count(*) FROM raw.osv_advisories").fetchall() == [(4,)]


def test_an_unscorable_cvss_vector_is_an_error_naming_file_advisory_and_value():
    record = usn()
    record["severity"] = [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:X/AC:L"}]
    with pytest.raises(osv.OsvAdvisoryError, match=(
            r"^bulletins/osv/usn\.json \(USN-6986-1\): severity\[type=CVSS_V3\]\.score: "
            r"'CVSS:3\.1/AV:X/AC:L' is not a valid CVSS_V3 vector$")):
        parse_bytes(json.dumps(record).encode(), "bulletins/osv/usn.json")


def test_an_ecosystem_all_zip_reads_every_member(tmp_path):
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        bundle.writestr("USN-6986-1.json", json.dumps(usn()))
        for record in debian_array():
            bundle.writestr(f"{record['id']}.json", json.dumps(record))
    (tmp_path / "Ubuntu").mkdir()
    (tmp_path / "Ubuntu" / "all.zip").write_bytes(buffer.getvalue())
    assert osv.osv_files(tmp_path) == [tmp_path / "Ubuntu" / "all.zip"]
    parsed = parse_bytes(buffer.getvalue(), "bulletins/osv/Ubuntu/all.zip")
    assert sorted(a["advisory_id"] for a in parsed.advisories) == sorted(
        ["USN-6986-1", *(r["id"] for r in debian_array())])
