"""CISA BOD 26-04 from data: KEV, exposure and Vulnrichment's Automatable / Technical Impact.

The two-machine estate of test_sla (vm-a internet-exposed, vm-b not; as of 2026-03-10) with
Vulnrichment decisions planted on its CVEs. Expected tiers from the decision table in
pipelines/config/sla.yaml, by hand:

  CVE-2026-0001 (5000001, not KEV)  automatable yes, total      vm-a: N,Y,Y,total -> 3d
                                                                vm-b: N,N,Y,total -> 60d
  CVE-2026-0009 (5000001, not KEV)  no Vulnrichment: defaults   vm-a: N,Y,N,total -> 14d
                                    (automatable no, total)     vm-b: N,N,N,total -> next_upgrade
  CVE-2026-0002 (5000002, KEV)      automatable no, partial     vm-a: Y,Y,N,partial -> 14d
                                                                vm-b: Y,N,N,partial -> 14d
5000001 takes CVE-2026-0001's (more urgent) outcome on both machines.
"""

from __future__ import annotations

from datetime import date

from test_sla import AS_OF, build_sla_estate

from pipelines.resources import connect_warehouse
from pipelines.warehouse import build_table

PLANTED = """
    CREATE OR REPLACE TABLE marts.patch_cves AS
    SELECT patch_key, cve, false AS exploited, in_kev, CAST(kev_date_added AS DATE) AS kev_date_added,
           CAST(kev_due_date AS DATE) AS kev_due_date, 0.5 AS epss,
           ssvc_automatable, ssvc_technical_impact
    FROM (VALUES
        ('5000001', 'CVE-2026-0001', false, NULL, NULL, true, 'total'),
        ('5000001', 'CVE-2026-0009', false, NULL, NULL, NULL, NULL),
        ('5000002', 'CVE-2026-0002', true, '2026-02-20', '2026-03-06', false, 'partial')
    ) AS t(patch_key, cve, in_kev, kev_date_added, kev_due_date, ssvc_automatable, ssvc_technical_impact)
"""


def test_patch_tiers_from_vulnrichment_and_defaults(tmp_path):
    conn = build_sla_estate(tmp_path / "w.duckdb")
    conn.execute(PLANTED)
    build_table(conn, "marts.patch_bod2604")
    rows = conn.execute(
        "SELECT patch_key, internet_exposed, tier, days, decisive_cve, automatable, technical_impact, "
        "ssvc_source, cve_count, cves_defaulted, rule FROM marts.patch_bod2604 ORDER BY ALL"
    ).fetchall()
    assert rows == [
        ("5000001", False, "60d", 60, "CVE-2026-0001", True, "total", "vulnrichment", 2, 1,
         "KEV no, internet-exposed no, automatable yes, technical impact total"),
        ("5000001", True, "3d", 3, "CVE-2026-0001", True, "total", "vulnrichment", 2, 1,
         "KEV no, internet-exposed yes, automatable yes, technical impact total"),
        ("5000002", False, "14d", 14, "CVE-2026-0002", False, "partial", "vulnrichment", 1, 0,
         "KEV yes, internet-exposed no, automatable no, technical impact partial"),
        ("5000002", True, "14d", 14, "CVE-2026-0002", False, "partial", "vulnrichment", 1, 0,
         "KEV yes, internet-exposed yes, automatable no, technical impact partial"),
    ]
    conn.close()


def test_gaps_take_the_tier_of_their_machine(tmp_path):
    conn = build_sla_estate(tmp_path / "w.duckdb")
    conn.execute(PLANTED)
    build_table(conn, "marts.patch_bod2604")
    build_table(conn, "marts.compliance_gaps", params={"as_of": AS_OF})
    got = {
        (vm[-4:], patch): (tier, due, source)
        for vm, patch, tier, due, source in conn.execute(
            "SELECT vm_id, patch_key, bod2604_tier, sla_bod2604_due, bod2604_ssvc_source "
            "FROM marts.compliance_gaps WHERE gap_type = 'authorized_missing'"
        ).fetchall()
    }
    conn.close()
    assert got == {
        # first seen 2026-02-05, no KEV: 2026-02-05 + 3
        ("vm-a", "5000001"): ("3d", date(2026, 2, 8), "vulnrichment"),
        # first seen 2026-02-10: + 60
        ("vm-b", "5000001"): ("60d", date(2026, 4, 11), "vulnrichment"),
        # KEV listed 2026-02-20 (before detection on 02-25): + 14; the defaults would give 3d
        ("vm-a", "5000002"): ("14d", date(2026, 3, 6), "vulnrichment"),
        # from 2026-02-20 + 14, plus the 2 days EXC-3 pauses (2026-03-08 .. 03-10)
        ("vm-b", "5000002"): ("14d", date(2026, 3, 8), "vulnrichment"),
        ("vm-b", "5000003"): (None, None, None),  # no CVE, no tier
    }


def test_without_vulnrichment_the_policy_defaults_are_used_and_said(tmp_path):
    conn = build_sla_estate(tmp_path / "w.duckdb")  # SSVC columns all NULL
    build_table(conn, "marts.compliance_gaps", params={"as_of": AS_OF})
    got = dict(conn.execute(
        "SELECT vm_id[-4:] || ' ' || patch_key, bod2604_tier || ' ' || bod2604_ssvc_source "
        "FROM marts.compliance_gaps WHERE gap_type = 'authorized_missing' AND bod2604_tier IS NOT NULL"
    ).fetchall())
    conn.close()
    assert got == {
        "vm-a 5000001": "14d policy_default",  # N,Y,N,total
        "vm-b 5000001": "next_upgrade policy_default",  # N,N,N,total
        "vm-a 5000002": "3d_forensic_triage policy_default",  # Y,Y,N,total
        "vm-b 5000002": "14d policy_default",  # Y,N,N,total
    }


def test_patch_cves_carry_vulnrichment_decided_by_the_as_of_date(tmp_path):
    """An OSV (Linux) fix and an MSRC fix get KEV, EPSS and SSVC alike; a Vulnrichment decision
    dated after the evaluation date is not used."""
    conn = connect_warehouse(str(tmp_path / "w.duckdb"))
    conn.execute("""
        CREATE TABLE staging.msrc_fixes AS SELECT '5000001' AS patch_key, '5000001' AS kb,
            'CVE-2026-0001' AS cve, '11923' AS product_id, 'Windows Server 2022' AS product,
            '2026-Feb' AS document_id, 'Critical' AS severity, 4 AS severity_rank, 'RCE' AS impact,
            9.8 AS cvss_base, 'CVSS:3.1/AV:N' AS cvss_vector, false AS exploited, false AS publicly_disclosed,
            TIMESTAMPTZ '2026-02-10 08:00:00+00' AS released_at
    """)
    conn.execute("""
        CREATE TABLE staging.osv_fixes AS SELECT 'libssl3_3.0.2-0ubuntu1.19' AS patch_key,
            'CVE-2026-0002' AS cve, 'Ubuntu:22.04:LTS' AS ecosystem, 'libssl3' AS package,
            'USN-7100-1' AS advisory_id, 'Important' AS severity, 3 AS severity_rank, 7.5 AS cvss_base,
            'CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N' AS cvss_vector,
            TIMESTAMPTZ '2026-02-15 00:00:00+00' AS published_at, TIMESTAMPTZ '2026-02-16 00:00:00+00' AS modified_at
    """)
    conn.execute("""
        CREATE TABLE raw.kev_vulnerabilities AS SELECT 'CVE-2026-0002' AS cve,
            TIMESTAMPTZ '2026-03-01 17:00:00+00' AS date_released, DATE '2026-02-20' AS date_added,
            DATE '2026-03-13' AS due_date, 'Unknown' AS known_ransomware_campaign_use, '2026.03.01' AS catalog_version
    """)
    conn.execute("""
        CREATE TABLE raw.epss_scores AS SELECT * FROM (VALUES
            ('CVE-2026-0002', 0.42::DOUBLE, 0.97::DOUBLE, DATE '2026-03-09')) AS t(cve, epss, percentile, score_date)
    """)
    conn.execute("""
        CREATE TABLE raw.vulnrichment_ssvc AS SELECT * FROM (VALUES
            ('CVE-2026-0001', 'none', 'yes', 'total', TIMESTAMPTZ '2026-03-11 08:00:00+00'),
            ('CVE-2026-0002', 'active', 'no', 'partial', TIMESTAMPTZ '2026-02-21 08:00:00+00')
        ) AS t(cve, exploitation, automatable, technical_impact, ssvc_timestamp)
    """)
    conn.execute("ALTER TABLE raw.vulnrichment_ssvc ADD COLUMN adp_updated_at TIMESTAMPTZ")
    conn.execute("ALTER TABLE raw.vulnrichment_ssvc ADD COLUMN record_updated_at TIMESTAMPTZ")
    build_table(conn, "marts.patch_cves", params={"as_of": AS_OF})
    rows = conn.execute(
        "SELECT patch_key, cve, source, in_kev, kev_due_date, epss, ssvc_exploitation, ssvc_automatable, "
        "ssvc_technical_impact FROM marts.patch_cves ORDER BY patch_key"
    ).fetchall()
    conn.close()
    assert rows == [
        # decided 2026-03-11, after the 2026-03-10 as-of date: not used
        ("5000001", "CVE-2026-0001", "msrc", False, None, None, None, None, None),
        ("libssl3_3.0.2-0ubuntu1.19", "CVE-2026-0002", "osv", True, date(2026, 3, 13), 0.42, "active", False, "partial"),
    ]
