"""Every gap type of marts.compliance_gaps, each planted once by hand (as of 2026-03-10).

vm-p: production, win-web, assessed. vm-t: test, win-web, assessed. vm-s: production, stale.
  patch    authorization  tested  vm-p state                -> gap on vm-p
  6000001  authorized     yes     missing                   -> authorized_missing
  6000002  authorized     yes     failed                    -> failed_reapply
  6000003  authorized     yes     installed_pending_reboot  -> pending_reboot
  6000004  in_test        yes     missing                   -> available_unauthorized
  6000005  none           yes     installed                 -> installed_unauthorized
  6000006  rejected       yes     installed                 -> installed_rejected
  6000007  authorized     no      installed                 -> untested_in_production
  6000008  rejected       yes     missing                   -> none (rejected, not wanted)
  6000009  authorized     yes     superseded_satisfied      -> none
  6000010  authorized     yes     not_selected              -> authorized_missing (left out of a run: missing)
  6000011  none           yes     not_selected              -> available_unauthorized
  6000012  rejected       yes     not_selected              -> none (Excluded: rejected, not wanted)
vm-t has 6000005 and 6000007 installed (no gap outside production) and 6000004 missing
(available_unauthorized in any environment). vm-s has one stale_assessment gap and none of its
patches (unknown_stale) counts.
"""

from __future__ import annotations

from datetime import date

from pipelines.policy import load_policy, policy_rows
from pipelines.resources import connect_warehouse
from pipelines.warehouse import build_table, replace_table

AS_OF = date(2026, 3, 10)
VM = "/subscriptions/s/resourcegroups/rg/providers/microsoft.compute/virtualmachines/"

STATES = [
    ("vm-p", "6000001", "missing"),
    ("vm-p", "6000002", "failed"),
    ("vm-p", "6000003", "installed_pending_reboot"),
    ("vm-p", "6000004", "missing"),
    ("vm-p", "6000005", "installed"),
    ("vm-p", "6000006", "installed"),
    ("vm-p", "6000007", "installed"),
    ("vm-p", "6000008", "missing"),
    ("vm-p", "6000009", "superseded_satisfied"),
    ("vm-p", "6000010", "not_selected"),
    ("vm-p", "6000011", "not_selected"),
    ("vm-p", "6000012", "not_selected"),
    ("vm-t", "6000005", "installed"),
    ("vm-t", "6000007", "installed"),
    ("vm-t", "6000004", "missing"),
    ("vm-s", "6000001", "unknown_stale"),
    ("vm-s", "6000005", "unknown_stale"),
]
AUTHORIZATION = {"6000001": "authorized", "6000002": "authorized", "6000003": "authorized",
                 "6000004": "in_test", "6000006": "rejected", "6000007": "authorized",
                 "6000008": "rejected", "6000009": "authorized", "6000010": "authorized",
                 "6000012": "rejected"}
TESTED = ["6000001", "6000002", "6000003", "6000004", "6000005", "6000006", "6000008", "6000009",
          "6000010", "6000011", "6000012"]


def build(path):
    conn = connect_warehouse(str(path))
    replace_table(conn, "staging.sla_policy", policy_rows(load_policy(None)))
    conn.execute(f"""
        CREATE TABLE marts.vm_inventory AS
        SELECT '{VM}' || name AS vm_id, name, 'ops@contoso.com' AS owner, 'high' AS criticality,
               environment, 'win-web' AS asset_category, coverage_status, false AS pci_scope,
               false AS internet_exposed, CAST(last_assessed_at AS TIMESTAMPTZ) AS last_assessed_at
        FROM (VALUES ('vm-p', 'production', 'assessed', '2026-03-10 02:00:00+00'),
                     ('vm-t', 'test', 'assessed', '2026-03-10 02:00:00+00'),
                     ('vm-s', 'production', 'unknown_stale', '2026-03-01 02:00:00+00'))
             AS t(name, environment, coverage_status, last_assessed_at)
    """)
    conn.execute("""
        CREATE TABLE marts.patch_catalog AS
        SELECT 'patch ' || patch_key AS title, patch_key, patch_key AS kb, 'Important' AS max_severity,
               TIMESTAMPTZ '2026-02-10 08:00:00+00' AS released_at
        FROM (SELECT CAST(6000000 + i AS VARCHAR) AS patch_key FROM range(1, 13) AS r(i))
    """)
    conn.execute("CREATE TABLE marts.patch_cves (patch_key VARCHAR, cve VARCHAR, exploited BOOLEAN, "
                 "in_kev BOOLEAN, kev_date_added DATE, kev_due_date DATE, epss DOUBLE, "
                 "ssvc_automatable BOOLEAN, ssvc_technical_impact VARCHAR)")
    conn.execute("CREATE TABLE marts.vm_patch_state (vm_id VARCHAR, patch_key VARCHAR, kb VARCHAR, "
                 "patch_name VARCHAR, classification VARCHAR, msrc_severity VARCHAR, state VARCHAR, "
                 "first_seen_at TIMESTAMPTZ)")
    conn.executemany(
        "INSERT INTO marts.vm_patch_state VALUES (?, ?, ?, 'title', 'Security', 'Important', ?, "
        "CASE WHEN ? IN ('installed', 'superseded_satisfied') THEN NULL "
        "ELSE TIMESTAMPTZ '2026-02-20 10:00:00+00' END)",
        [[VM + vm, patch, patch, state, state] for vm, patch, state in STATES],
    )
    conn.execute("CREATE TABLE marts.authorization_status (patch_key VARCHAR, asset_category VARCHAR, "
                 "environment VARCHAR, status VARCHAR, status_since TIMESTAMPTZ, authorized_at TIMESTAMPTZ)")
    conn.executemany(
        "INSERT INTO marts.authorization_status VALUES (?, '*', '*', ?, TIMESTAMPTZ '2026-02-15 00:00:00+00', "
        "CASE WHEN ? = 'authorized' THEN TIMESTAMPTZ '2026-02-15 00:00:00+00' END)",
        [[patch, status, status] for patch, status in AUTHORIZATION.items()],
    )
    conn.execute("CREATE TABLE staging.patch_tests (test_id VARCHAR, patch_key VARCHAR, "
                 "asset_category VARCHAR, result VARCHAR, tester VARCHAR, "
                 "started_at TIMESTAMPTZ, ended_at TIMESTAMPTZ)")
    # every planted test ended well before the evaluation date
    conn.executemany("INSERT INTO staging.patch_tests VALUES (?, ?, 'win-web', 'passed', 'qa@contoso.com', "
                     "'2026-01-05 09:00:00+00', '2026-01-06 09:00:00+00')",
                     [[f"T-{patch}", patch] for patch in TESTED])
    conn.execute("CREATE TABLE staging.exceptions (exception_id VARCHAR, vm_id VARCHAR, asset_category VARCHAR, "
                 "patch_key VARCHAR, cve VARCHAR, reason VARCHAR, requested_by VARCHAR, approver VARCHAR, "
                 "approved_at TIMESTAMPTZ, expires_at TIMESTAMPTZ, status VARCHAR)")
    # The planted patches fix no CVE: no BOD 26-04 tier, the other frameworks' clocks decide.
    build_table(conn, "marts.patch_bod2604")
    return conn


def test_each_gap_type_once(tmp_path):
    conn = build(tmp_path / "w.duckdb")
    build_table(conn, "marts.compliance_gaps", params={"as_of": AS_OF})
    gaps = conn.execute(
        "SELECT vm_name, patch_key, gap_type, state FROM marts.compliance_gaps ORDER BY ALL"
    ).fetchall()
    conn.close()
    assert gaps == sorted([
        ("vm-p", "6000001", "authorized_missing", "missing"),
        ("vm-p", "6000002", "failed_reapply", "failed"),
        ("vm-p", "6000003", "pending_reboot", "installed_pending_reboot"),
        ("vm-p", "6000004", "available_unauthorized", "missing"),
        ("vm-p", "6000005", "installed_unauthorized", "installed"),
        ("vm-p", "6000006", "installed_rejected", "installed"),
        ("vm-p", "6000007", "untested_in_production", "installed"),
        ("vm-p", "6000010", "authorized_missing", "not_selected"),
        ("vm-p", "6000011", "available_unauthorized", "not_selected"),
        ("vm-t", "6000004", "available_unauthorized", "missing"),
        ("vm-s", None, "stale_assessment", "unknown_stale"),
    ], key=lambda g: (g[0], g[1] or "", g[2], g[3]))


def test_clocks_run_for_the_remediable_gap_types_only(tmp_path):
    conn = build(tmp_path / "w.duckdb")
    build_table(conn, "marts.compliance_gaps", params={"as_of": AS_OF})
    dues = dict(conn.execute(
        "SELECT gap_type, sla_due FROM marts.compliance_gaps WHERE vm_name = 'vm-p'"
    ).fetchall())
    conn.close()
    clocked = {"authorized_missing", "failed_reapply", "pending_reboot", "available_unauthorized"}
    for gap_type, due in dues.items():
        assert (due is not None) == (gap_type in clocked), gap_type
    # Important (pipelines/config/sla.yaml): internal 30 days from the release 2026-02-10 ->
    # 2026-03-12; FedRAMP (high) 30 days from detection 2026-02-20 -> 2026-03-22. The earlier wins.
    assert dues["failed_reapply"] == date(2026, 3, 12)
    assert dues["available_unauthorized"] == date(2026, 3, 12)
