"""The demo's Linux patches in the catalog through OSV: CVEs, severity, BOD 26-04 tier.

Expected values are read from the estate's own OSV files (the binary package and version each
advisory fixes, the CVEs in `upstream`, the Ubuntu priority), not from the warehouse.
"""

from __future__ import annotations

import json

import duckdb

UBUNTU_PRIORITY = {"critical": "Critical", "high": "Important", "medium": "Moderate", "low": "Low"}
CLOCKED = ("authorized_missing", "available_unauthorized", "failed_reapply", "pending_reboot")


def advisories(estate) -> dict[str, tuple[list[str], str]]:
    """<binary>_<version> -> (CVEs, MSRC-scale severity) from bulletins/osv/ubuntu/*.json."""
    fixes: dict[str, tuple[list[str], str]] = {}
    for path in sorted((estate / "bulletins" / "osv" / "ubuntu").glob("*.json")):
        record = json.loads(path.read_text(encoding="utf-8"))
        priority = next(s["score"] for s in record["severity"] if s["type"] == "Ubuntu")
        for affected in record["affected"]:
            for binary in affected["ecosystem_specific"]["binaries"]:
                key = f"{binary['binary_name']}_{binary['binary_version']}"
                fixes[key] = (sorted(record["upstream"]), UBUNTU_PRIORITY[priority])
    return fixes


def test_demo_linux_gaps_carry_the_advisories_cves_and_a_tier(demo_run):
    estate, warehouse, _, result = demo_run
    assert result.success
    expected = advisories(estate)
    assert expected  # the demo writes OSV advisories
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        gaps = conn.execute("""
            SELECT g.patch_key, g.cves, g.severity, g.gap_type, g.bod2604_tier
            FROM marts.compliance_gaps AS g JOIN marts.vm_inventory AS i USING (vm_id)
            WHERE i.os_type = 'Linux' AND contains(g.patch_key, '_')
        """).fetchall()
        catalog = dict(conn.execute(
            "SELECT patch_key, cves FROM marts.patch_catalog WHERE list_contains(sources, 'osv')").fetchall())
    assert gaps
    for patch_key, cves, severity, gap_type, tier in gaps:
        assert (sorted(cves), severity) == expected[patch_key], patch_key
        if gap_type in CLOCKED:
            assert tier is not None, (patch_key, gap_type)
    # Every binary package fix is a catalog entry with the advisory's CVEs (the source package's
    # own key, glibc_... for libc6_..., is in the catalog too).
    assert {k: sorted(catalog[k]) for k in expected} == {k: v[0] for k, v in expected.items()}
