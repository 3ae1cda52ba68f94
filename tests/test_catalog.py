"""Stage 3 assets end to end: raw MSRC/KEV/EPSS -> staging -> patch marts, on a DuckDB file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from assets import bulletins
from pipelines.resources import RunSettings, WarehouseResource
from pipelines.sources.bulletins.resource import bulletin_resources
from pipelines.sources.epss.assets import epss_scores
from pipelines.sources.kev.assets import kev_vulnerabilities
from pipelines.sources.msrc.assets import msrc_documents
from pipelines.sources.osv.assets import osv_advisories

SAMPLES = Path(__file__).parents[2] / "shared" / "samples"
ALL = [
    msrc_documents, kev_vulnerabilities, epss_scores,
    osv_advisories, bulletins.osv_fixes, bulletins.msrc_fixes, bulletins.patch_supersedence, bulletins.patch_supersedence_closure,
    bulletins.patch_fix_lineage, bulletins.patch_fixed_builds, bulletins.patch_cves,
    # The checks run in their assets' steps: patch_catalog_key_unique in the catalog's,
    # supersedence_cycles in the closure's, kev_catalog_not_empty in the KEV ingest's.
    bulletins.patch_catalog,
]
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun"]
NAMES = ["January", "February", "March", "April", "May", "June"]


def run(tmp_path: Path, estate: Path, as_of: str = "2026-07-01") -> tuple[dg.ExecuteInProcessResult, duckdb.DuckDBPyConnection]:
    database = tmp_path / "w.duckdb"
    result = dg.materialize(
        ALL,
        resources={
            **bulletin_resources(),
            "warehouse": WarehouseResource(database=str(database)),
            "run_settings": RunSettings(estate_dir=str(estate), as_of=as_of),
        },
        raise_on_error=False,
    )
    return result, duckdb.connect(str(database), read_only=True)


def month_doc(index: int, fixes: list[tuple[str, str, str, str]]) -> dict:
    """A 2026 month in the API JSON form; fixes = (cve, product_id, kb, supersedence)."""
    document_id = f"2026-{MONTHS[index]}"
    vulns = []
    for cve, product_id, kb, supersedes in fixes:
        vulns.append({
            "CVE": cve,
            "ProductStatuses": [{"ProductID": [product_id], "Type": 3}],
            "Threats": [{"Type": 3, "ProductID": [product_id], "Description": {"Value": "Critical"}},
                        {"Type": 1, "Description": {"Value": "Publicly Disclosed:No;Exploited:No;"}}],
            "CVSSScoreSets": [{"BaseScore": 8.1, "TemporalScore": 7.1, "Vector": "CVSS:3.1/AV:N", "ProductID": [product_id]}],
            "Remediations": [{"Type": 2, "Description": {"Value": kb}, "ProductID": [product_id],
                              "Supercedence": supersedes, "RestartRequired": {"Value": "Yes"},
                              "SubType": "Security Update", "FixedBuild": f"10.0.20348.{3000 + index}"}],
        })
    return {
        "DocumentTitle": {"Value": f"{NAMES[index]} 2026 Security Updates"},
        "DocumentTracking": {
            "Identification": {"ID": {"Value": document_id}},
            "InitialReleaseDate": f"2026-{index + 1:02d}-13T08:00:00",
            "CurrentReleaseDate": f"2026-{index + 1:02d}-13T08:00:00",
        },
        "ProductTree": {"FullProductName": [{"ProductID": "11923", "Value": "Windows Server 2022"},
                                            {"ProductID": "11924", "Value": "Windows Server 2022 (Core)"}]},
        "Vulnerability": vulns,
    }


@pytest.fixture
def chain_estate(tmp_path: Path) -> Path:
    """Six months of one cumulative chain 101 <- 102 <- ... <- 106; 106 also supersedes 201
    (a second predecessor); 301 and 302 supersede each other (a cycle)."""
    folder = tmp_path / "estate" / "bulletins" / "msrc"
    folder.mkdir(parents=True)
    for i in range(6):
        fixes = [(f"CVE-2026-{i:04d}", "11923", str(101 + i), str(100 + i) if i else "")]
        if i == 5:
            fixes.append(("CVE-2026-9000", "11924", "106", "201"))
        if i == 1:
            fixes.append(("CVE-2026-8000", "11924", "201", ""))
        if i == 2:
            fixes += [("CVE-2026-7001", "11924", "301", "302"), ("CVE-2026-7002", "11924", "302", "301")]
        (folder / f"2026-{MONTHS[i]}.json").write_text(json.dumps(month_doc(i, fixes)), encoding="utf-8")
    return tmp_path / "estate"


def test_supersedence_closure_lineage_and_cycles(tmp_path, chain_estate):
    result, conn = run(tmp_path, chain_estate)
    assert result.success
    closure = {(kb, s): (d, c) for kb, s, d, c in conn.execute(
        "SELECT kb, superseded_kb, depth, in_cycle FROM marts.patch_supersedence_closure").fetchall()}
    assert closure[("106", "101")] == (5, False)  # the whole chain
    assert closure[("106", "201")] == (1, False)  # second predecessor
    assert closure[("104", "101")] == (3, False)
    assert ("101", "106") not in closure
    assert closure[("301", "302")] == (1, True) and closure[("302", "301")] == (1, True)
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert checks["supersedence_cycles"].passed is False  # WARN: reported, run succeeds
    assert checks["patch_catalog_key_unique"].passed
    lineage = dict(conn.execute("SELECT kb, lineage_id FROM marts.patch_fix_lineage").fetchall())
    assert {lineage[kb] for kb in ("101", "102", "106", "201")} == {"101"}  # earliest released
    assert lineage["301"] == lineage["302"] == "301"
    catalog = conn.execute(
        "SELECT supersedes, superseded_by, fix_lineage_id, max_severity, restart_required "
        "FROM marts.patch_catalog WHERE patch_key = '106'").fetchall()
    assert catalog == [(["105", "201"], [], "101", "Critical", "Yes")]
    assert conn.execute(
        "SELECT superseded_by FROM marts.patch_catalog WHERE patch_key = '201'").fetchall() == [(["106"],)]


def test_fixed_build_comparison(tmp_path, chain_estate):
    result, conn = run(tmp_path, chain_estate)
    assert result.success
    fixed = conn.execute(
        "SELECT build_parts, build_major, build_number, build_revision FROM marts.patch_fixed_builds "
        "WHERE kb = '104' AND product_id = '11923'").fetchall()
    assert fixed == [([10, 0, 20348, 3003], 10, 20348, 3003)]
    newer, older = conn.execute(
        "SELECT [10, 0, 20348, 3100] >= build_parts, [10, 0, 20348, 999] >= build_parts "
        "FROM marts.patch_fixed_builds WHERE kb = '104' AND product_id = '11923'").fetchone()
    assert newer is True and older is False


def test_rerun_with_a_mis_titled_month_keeps_previous_rows(tmp_path, chain_estate):
    result, conn = run(tmp_path, chain_estate)
    assert result.success
    conn.close()
    bad = month_doc(0, [("CVE-2026-0000", "11923", "101", "")])
    bad["DocumentTitle"] = {"Value": "February 2026 Security Updates"}
    bad["DocumentTracking"]["CurrentReleaseDate"] = "2026-03-01T00:00:00"
    (chain_estate / "bulletins" / "msrc" / "2026-Jan.json").write_text(json.dumps(bad), encoding="utf-8")
    result, conn = run(tmp_path, chain_estate)
    assert not result.success
    assert conn.execute("SELECT count(*) FROM raw.msrc_documents").fetchone()[0] == 6


def test_missing_sources_give_empty_tables(tmp_path):
    (tmp_path / "estate").mkdir()
    result, conn = run(tmp_path, tmp_path / "estate")
    assert result.success
    for table in ("raw.msrc_fixes", "raw.kev_vulnerabilities", "raw.epss_scores", "marts.patch_catalog"):
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 0


def test_real_january_2024_with_kev(tmp_path):
    msrc_sample = SAMPLES / "msrc" / "cvrf_2024-Jan.xml.gz"
    kev_sample = SAMPLES / "kev" / "known_exploited_vulnerabilities.json"
    if not (msrc_sample.exists() and kev_sample.exists()):
        pytest.skip("samples not available")
    estate = tmp_path / "estate"
    for source, sample in (("msrc", msrc_sample), ("kev", kev_sample)):
        (estate / "bulletins" / source).mkdir(parents=True)
        shutil.copy(sample, estate / "bulletins" / source / sample.name)
    result, conn = run(tmp_path, estate, as_of="2025-09-01")
    assert result.success
    assert conn.execute("SELECT count(*) FROM raw.kev_vulnerabilities").fetchone()[0] == 1404
    # CVE-2024-0519 (Chromium V8, fixed by Edge 120.0.2210.144) is in the January 2024 document
    # and in KEV (added 2024-01-17, due 2024-02-07).
    flagged = conn.execute(
        "SELECT patch_key, kev_due_date::VARCHAR FROM marts.patch_cves WHERE cve = 'CVE-2024-0519' AND in_kev"
    ).fetchall()
    assert flagged == [("microsoft-edge-chromium-based_120.0.2210.144", "2024-02-07")]
    assert conn.execute(
        "SELECT in_kev FROM marts.patch_catalog WHERE patch_key = 'microsoft-edge-chromium-based_120.0.2210.144'"
    ).fetchone() == (True,)
    # As of a date before CISA added it, it is not in KEV.
    conn.close()
    result, conn = run(tmp_path, estate, as_of="2024-01-16")
    assert conn.execute("SELECT bool_or(in_kev) FROM marts.patch_cves WHERE cve = 'CVE-2024-0519'").fetchone() == (False,)
    kb = conn.execute(
        "SELECT kb, supersedes, max_severity, max_cvss, cve_count FROM marts.patch_catalog WHERE patch_key = '5034129'"
    ).fetchone()
    assert kb == ("5034129", ["5033118"], "Critical", 8.8, 36)
    assert conn.execute("SELECT count(*) FROM marts.patch_catalog").fetchone()[0] == 166
    assert conn.execute("SELECT count(*) FROM staging.msrc_fixes").fetchone()[0] == 1949
