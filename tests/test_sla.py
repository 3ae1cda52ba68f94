"""SLA clocks of marts.compliance_gaps checked by hand on a two-machine estate.

As of 2026-03-10. vm-a: production, pci-scope, internet-exposed. vm-b: production, neither.
  5000001  Critical,  released 2026-01-31, CVE-2026-0001 (not KEV)
  5000002  Important, released 2026-02-10, CVE-2026-0002 (KEV: added 2026-02-20, due 2026-03-06)
  5000003  Moderate,  released 2026-02-01, no CVE
  5000004  installed on vm-a, never authorized, its test passes only on 2026-03-11
Exceptions: EXC-1 (vm-b, 5000003, approved 2026-03-01, valid to June) pauses; EXC-2 (vm-a,
5000001) expired on 2026-03-05 and pauses nothing; EXC-3 (vm-b, CVE-2026-0002, approved
2026-03-08) pauses 2 days.
"""

from __future__ import annotations

import copy
from datetime import date
from types import SimpleNamespace

import pytest

from pipelines.policy import PolicyError, _validate, load_policy, policy_rows
from pipelines.resources import connect_warehouse
from pipelines.warehouse import build_table, replace_table

AS_OF = date(2026, 3, 10)
VM_A = "/subscriptions/s/resourcegroups/rg/providers/microsoft.compute/virtualmachines/vm-a"
VM_B = "/subscriptions/s/resourcegroups/rg/providers/microsoft.compute/virtualmachines/vm-b"


def build_sla_estate(path):
    """A DuckDB warehouse with the tables marts.compliance_gaps reads; returns the connection."""
    conn = connect_warehouse(str(path))
    replace_table(conn, "staging.sla_policy", policy_rows(load_policy(None)))
    conn.execute(f"""
        CREATE TABLE marts.vm_inventory AS
        SELECT * FROM (VALUES
            ('{VM_A}', 'vm-a', 'web@contoso.com', 'high', 'production', 'win-web', 'assessed', true, true),
            ('{VM_B}', 'vm-b', 'app@contoso.com', 'medium', 'production', 'win-app', 'assessed', false, false)
        ) AS t(vm_id, name, owner, criticality, environment, asset_category, coverage_status,
               pci_scope, internet_exposed),
        (SELECT TIMESTAMPTZ '2026-03-10 06:00:00+00' AS last_assessed_at)
    """)
    conn.execute("""
        CREATE TABLE marts.patch_catalog AS
        SELECT patch_key, patch_key AS kb, title, max_severity, CAST(released_at AS TIMESTAMPTZ) AS released_at
        FROM (VALUES
            ('5000001', 'Critical update', 'Critical', '2026-01-31 08:00:00+00'),
            ('5000002', 'Important update', 'Important', '2026-02-10 08:00:00+00'),
            ('5000003', 'Moderate update', 'Moderate', '2026-02-01 08:00:00+00'),
            ('5000004', 'Low update', 'Low', '2026-01-10 08:00:00+00')
        ) AS t(patch_key, title, max_severity, released_at)
    """)
    conn.execute("""
        CREATE TABLE marts.patch_cves AS
        SELECT patch_key, cve, false AS exploited, in_kev, CAST(kev_date_added AS DATE) AS kev_date_added,
               CAST(kev_due_date AS DATE) AS kev_due_date, 0.5 AS epss,
               NULL::BOOLEAN AS ssvc_automatable, NULL::VARCHAR AS ssvc_technical_impact
        FROM (VALUES
            ('5000001', 'CVE-2026-0001', false, NULL, NULL),
            ('5000002', 'CVE-2026-0002', true, '2026-02-20', '2026-03-06')
        ) AS t(patch_key, cve, in_kev, kev_date_added, kev_due_date)
    """)
    conn.execute(f"""
        CREATE TABLE marts.vm_patch_state AS
        SELECT vm_id, patch_key, patch_key AS kb, 'title' AS patch_name, 'Security' AS classification,
               NULL::VARCHAR AS msrc_severity, state, CAST(first_seen_at AS TIMESTAMPTZ) AS first_seen_at
        FROM (VALUES
            ('{VM_A}', '5000001', 'missing', '2026-02-05 10:00:00+00'),
            ('{VM_B}', '5000001', 'missing', '2026-02-10 10:00:00+00'),
            ('{VM_A}', '5000002', 'missing', '2026-02-25 10:00:00+00'),
            ('{VM_B}', '5000002', 'missing', '2026-03-01 10:00:00+00'),
            ('{VM_B}', '5000003', 'missing', '2026-02-15 10:00:00+00'),
            ('{VM_A}', '5000004', 'installed', NULL)
        ) AS t(vm_id, patch_key, state, first_seen_at)
    """)
    conn.execute("""
        CREATE TABLE marts.authorization_status AS
        SELECT patch_key, '*' AS asset_category, '*' AS environment, 'authorized' AS status,
               TIMESTAMPTZ '2026-02-01 00:00:00+00' AS status_since,
               TIMESTAMPTZ '2026-02-01 00:00:00+00' AS authorized_at
        FROM (VALUES ('5000001'), ('5000002'), ('5000003')) AS t(patch_key)
    """)
    conn.execute("""
        CREATE TABLE staging.patch_tests AS
        SELECT test_id, patch_key, 'win-web' AS asset_category, 'passed' AS result,
               'tester@contoso.com' AS tester, CAST(started_at AS TIMESTAMPTZ) AS started_at,
               CAST(ended_at AS TIMESTAMPTZ) AS ended_at
        FROM (VALUES
            ('T1', '5000001', '2026-01-31 10:00:00+00', '2026-02-01 10:00:00+00'),
            -- passes only the day after the evaluation date: 5000004 is still untested then
            ('T2', '5000004', '2026-03-10 20:00:00+00', '2026-03-11 08:00:00+00')
        ) AS t(test_id, patch_key, started_at, ended_at)
    """)
    conn.execute(f"""
        CREATE TABLE staging.exceptions AS
        SELECT exception_id, vm_id, asset_category, patch_key, cve, 'vendor' AS reason,
               'app@contoso.com' AS requested_by, 'cab@contoso.com' AS approver,
               CAST(approved_at AS TIMESTAMPTZ) AS approved_at, CAST(expires_at AS TIMESTAMPTZ) AS expires_at,
               'active' AS status
        FROM (VALUES
            ('EXC-1', '{VM_B}', 'win-app', '5000003', NULL, '2026-03-01 12:00:00+00', '2026-06-01 00:00:00+00'),
            ('EXC-2', '{VM_A}', '*', '5000001', NULL, '2026-02-20 00:00:00+00', '2026-03-05 00:00:00+00'),
            ('EXC-3', '{VM_B}', '*', NULL, 'CVE-2026-0002', '2026-03-08 09:00:00+00', '2026-04-01 00:00:00+00')
        ) AS t(exception_id, vm_id, asset_category, patch_key, cve, approved_at, expires_at)
    """)
    # No Vulnrichment decisions here: every CVE takes the policy defaults (test_bod2604 plants them).
    build_table(conn, "marts.patch_bod2604")
    return conn


@pytest.fixture()
def gaps(tmp_path):
    conn = build_sla_estate(tmp_path / "w.duckdb")
    build_table(conn, "marts.compliance_gaps", params={"as_of": AS_OF})
    result = conn.execute("SELECT * FROM marts.compliance_gaps")
    names = [c[0] for c in result.description]
    rows = [SimpleNamespace(**dict(zip(names, r, strict=True))) for r in result.fetchall()]
    conn.close()
    return {(r.vm_id[-4:], r.patch_key, r.gap_type): r for r in rows}


def d(text):
    return date.fromisoformat(text)


def _date(value):
    return value


def test_critical_patch_on_pci_scope_machine(gaps):
    g = gaps[("vm-a", "5000001", "authorized_missing")]
    assert _date(g.sla_internal_due) == d("2026-02-14")  # release 2026-01-31 + 14 days
    assert _date(g.sla_pci_due) == d("2026-02-28")  # one calendar month after 2026-01-31
    assert _date(g.sla_fedramp_due) == d("2026-03-07")  # detection 2026-02-05 + 30 days
    assert _date(g.sla_kev_due) is None
    # Not in KEV, internet-exposed, defaults automatable=no / total -> 14 days from detection.
    assert g.bod2604_tier == "14d"
    assert _date(g.sla_bod2604_due) == d("2026-02-19")
    assert _date(g.sla_due) == d("2026-02-14") and g.sla_framework == "internal"
    assert g.days_overdue == 24
    # EXC-2 had expired on 2026-03-05: no pause.
    assert g.exception_id is None and g.paused_days == 0


def test_pci_applies_only_on_pci_scope_machines_and_critical(gaps):
    assert _date(gaps[("vm-b", "5000001", "authorized_missing")].sla_pci_due) is None
    assert _date(gaps[("vm-a", "5000002", "authorized_missing")].sla_pci_due) is None  # Important
    g = gaps[("vm-b", "5000001", "authorized_missing")]
    assert g.bod2604_tier == "next_upgrade" and _date(g.sla_bod2604_due) is None
    assert _date(g.sla_fedramp_due) == d("2026-03-12")
    assert g.days_overdue == 24


def test_kev_patch_on_exposed_machine_gets_three_days_from_kev_listing(gaps):
    g = gaps[("vm-a", "5000002", "authorized_missing")]
    assert _date(g.sla_internal_due) == d("2026-03-12")  # 2026-02-10 + 30
    assert _date(g.sla_fedramp_due) == d("2026-03-27")  # 2026-02-25 + 30
    assert _date(g.sla_kev_due) == d("2026-03-06")
    # KEV listing (2026-02-20) is earlier than detection (2026-02-25): clock starts 2026-02-20.
    assert _date(g.bod2604_clock_start) == d("2026-02-20")
    assert g.bod2604_tier == "3d_forensic_triage" and g.bod2604_forensic_triage
    assert _date(g.sla_bod2604_due) == d("2026-02-23")
    assert g.sla_framework == "cisa_bod2604" and g.days_overdue == 15


def test_exception_on_a_cve_pauses_every_clock(gaps):
    g = gaps[("vm-b", "5000002", "authorized_missing")]
    # EXC-3 approved 2026-03-08: 2 paused days up to 2026-03-10.
    assert g.exception_id == "EXC-3" and g.paused_days == 2
    assert _date(g.sla_kev_due) == d("2026-03-08")  # 2026-03-06 + 2
    assert g.bod2604_tier == "14d"  # KEV, not exposed
    assert _date(g.sla_bod2604_due) == d("2026-03-08")  # 2026-02-20 + 14 + 2
    assert _date(g.sla_internal_due) == d("2026-03-14")
    assert _date(g.sla_due) == d("2026-03-08") and g.sla_framework == "cisa_kev"
    assert g.days_overdue == 2


def test_exception_on_a_patch_pauses_for_the_covered_days(gaps):
    g = gaps[("vm-b", "5000003", "authorized_missing")]
    assert g.exception_id == "EXC-1" and g.paused_days == 9  # 2026-03-01 .. 2026-03-10
    assert _date(g.sla_internal_due) == d("2026-04-11")  # 2026-02-01 + 60 + 9
    assert _date(g.sla_fedramp_due) == d("2026-05-25")  # 2026-02-15 + 90 + 9
    assert g.bod2604_tier is None  # no CVE
    assert g.days_overdue == 0


def test_existing_columns_kept_and_new_ones_after(tmp_path):
    conn = build_sla_estate(tmp_path / "w.duckdb")
    build_table(conn, "marts.compliance_gaps", params={"as_of": AS_OF})
    names = [r[0] for r in conn.execute("SELECT * FROM marts.compliance_gaps LIMIT 0").description]
    conn.close()
    existing = ("gap_id vm_id vm_name patch_key kb gap_type state title severity cves exploited in_kev "
                "kev_due_date epss released_at first_seen_at age_days owner criticality environment "
                "asset_category authorization_status authorized_at sla_internal_due sla_pci_due "
                "sla_fedramp_due sla_kev_due sla_due sla_framework days_overdue priority as_of").split()
    assert names[: len(existing)] == existing
    assert {"sla_bod2604_due", "bod2604_tier", "exception_id", "paused_days"} <= set(names[len(existing):])


def test_installed_gaps_have_no_clock(gaps):
    g = gaps[("vm-a", "5000004", "installed_unauthorized")]
    assert _date(g.sla_due) is None and g.days_overdue == 0
    assert ("vm-a", "5000004", "untested_in_production") in gaps


def test_policy_decision_table_is_validated():
    policy = load_policy(None)
    rows = policy_rows(policy)
    bod = rows[rows.framework == "cisa_bod2604"]
    assert len(bod) == 16
    assert sorted(bod.tier.value_counts().items()) == [
        ("14d", 6), ("3d", 2), ("3d_forensic_triage", 3), ("60d", 3), ("next_upgrade", 2)]
    broken = copy.deepcopy(policy)
    broken["frameworks"]["cisa_bod2604"]["decisions"].pop()
    with pytest.raises(PolicyError, match="16 combinations"):
        _validate(broken, None)
    broken = copy.deepcopy(policy)
    broken["frameworks"]["cisa_bod2604"]["decisions"][0]["days"] = 5
    with pytest.raises(PolicyError, match="exactly one of days or outcome"):
        _validate(broken, None)
    disabled = copy.deepcopy(policy)
    disabled["frameworks"]["cisa_bod2604"]["enabled"] = False
    assert "cisa_bod2604" not in set(policy_rows(disabled).framework)


def test_estate_override_is_validated(tmp_path):
    (tmp_path / "policy").mkdir()
    (tmp_path / "policy" / "sla.yaml").write_text(
        "frameworks:\n  cisa_bod2604:\n    enabled: false\n    clock: kev_added_or_detect\n"
        "    defaults: {automatable: false, technical_impact: total}\n    decisions: []\n"
    )
    with pytest.raises(PolicyError, match="16 combinations"):
        load_policy(tmp_path)
