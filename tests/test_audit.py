"""The scheduled audit on the two-machine estate of test_sla.py (as of 2026-03-10)."""

from __future__ import annotations

import json

from test_sla import AS_OF, build_sla_estate

from pipelines.warehouse import build_table

STAGE5 = """
    CREATE TABLE marts.{table} AS
    SELECT sha256('{rule}|{subject}') AS finding_id, '{rule}' AS rule, 'high' AS severity,
           '{subject}' AS subject, '5000004' AS patch_key, 'win-web' AS asset_category,
           'production' AS environment, NULL::VARCHAR AS vm_id, 'criteria' AS criteria,
           'condition' AS condition, '{{}}' AS evidence
"""


def build_audit(path):
    conn = build_sla_estate(path)
    conn.execute(STAGE5.format(table="authorization_findings", rule="sod_requester_approver",
                               subject="authorization_event/E1"))
    conn.execute(STAGE5.format(table="authorization_install_findings", rule="install_before_approval",
                               subject="vm/x/patch/5000004"))
    # A finding of the automatic-updates control, with its own cause, effect and recommendation.
    conn.execute(STAGE5.format(table="auto_update_findings", rule="automatic_updates_in_production",
                               subject="vm/x").replace(
        "AS evidence", "AS evidence, 'own cause' AS cause, 'own effect' AS effect, 'own recommendation' AS recommendation"))
    conn.execute(STAGE5.format(table="rollback_findings", rule="production_unprotected", subject="vm/y").replace(
        "AS evidence", "AS evidence, 'no vault' AS cause, 'no way back' AS effect, 'protect it' AS recommendation"))
    conn.execute(STAGE5.format(table="maintenance_findings", rule="machine_unscheduled", subject="vm/z").replace(
        "AS evidence", "AS evidence, 'no window' AS cause, 'never patched' AS effect, 'assign it' AS recommendation"))
    # What arrived after the date: one scan file, two authorization events recorded late.
    conn.execute(f"""
        CREATE TABLE marts.late_arrivals AS
        SELECT * FROM (VALUES
            ('scan_file', 'azure/resource_graph/patchassessmentresources-2026-03-08.json',
             'raw.patch_assessment_resources', DATE '2026-03-08', DATE '2026-03-08',
             TIMESTAMPTZ '2026-03-12 06:00:00+00', 2),
            ('register_row', 'authorization_events/E7', 'authorization_events', DATE '2026-03-01',
             DATE '2026-03-01', TIMESTAMPTZ '2026-03-20 09:00:00+00', 10),
            ('register_row', 'authorization_events/E3', 'authorization_events', DATE '2026-02-20',
             DATE '2026-02-20', TIMESTAMPTZ '2026-03-11 09:00:00+00', 1)
        ) AS t(kind, subject, source, covers_from, covers_to, arrived_at, days_late),
        (SELECT 'sha' AS source_sha256, DATE '{AS_OF}' AS as_of)""")
    build_table(conn, "marts.compliance_gaps", params={"as_of": AS_OF})
    build_table(conn, "marts.audit_findings", params={"as_of": AS_OF})
    return conn


def findings(conn):
    result = conn.execute("SELECT * FROM marts.audit_findings ORDER BY finding_id")
    names = [c[0] for c in result.description]
    return {row[names.index("rule")]: dict(zip(names, row, strict=True)) for row in result.fetchall()}


def test_rules_counts_and_population(tmp_path):
    conn = build_audit(tmp_path / "w.duckdb")
    found = findings(conn)
    gap_ids = dict(conn.execute(
        "SELECT gap_type || '/' || patch_key || '/' || vm_name, gap_id FROM marts.compliance_gaps"
    ).fetchall())
    conn.close()
    assert set(found) == {
        "installed_unauthorized", "untested_in_production", "kev_overdue", "overdue_internal",
        "overdue_pci_dss", "overdue_fedramp", "overdue_cisa_bod2604", "sod_requester_approver",
        "install_before_approval", "automatic_updates_in_production", "production_unprotected",
        "machine_unscheduled", "late_scan_file", "register_row_recorded_late",
    }
    late = found["late_scan_file"]
    assert (late["subject"], late["severity"], late["source_table"]) == (
        "file/azure/resource_graph/patchassessmentresources-2026-03-08.json", "medium", "marts.late_arrivals")
    assert late["condition"] == (
        "azure/resource_graph/patchassessmentresources-2026-03-08.json (raw.patch_assessment_resources) holds "
        "rows of 2026-03-08 to 2026-03-08 and landed on 2026-03-12 06:00 UTC, 2 day(s) after 2026-03-10")
    recorded = found["register_row_recorded_late"]
    assert (recorded["subject"], recorded["affected"]) == ("register/authorization_events", 2)
    assert recorded["condition"] == (
        "2 row(s) of registers/authorization_events.csv for events on or before 2026-03-10 were first "
        "recorded after it (first: authorization_events/E3, arrived 2026-03-11 09:00 UTC)")
    assert json.loads(recorded["evidence"])["rows"] == ["authorization_events/E3", "authorization_events/E7"]
    assert (found["machine_unscheduled"]["source_table"], found["machine_unscheduled"]["cause"]) == (
        "marts.maintenance_findings", "no window")
    assert (found["production_unprotected"]["source_table"], found["production_unprotected"]["cause"]) == (
        "marts.rollback_findings", "no vault")
    auto = found["automatic_updates_in_production"]
    assert (auto["source_table"], auto["cause"], auto["effect"], auto["recommendation"]) == (
        "marts.auto_update_findings", "own cause", "own effect", "own recommendation")
    unauthorized = found["installed_unauthorized"]
    # Population: the one production installation in the estate (5000004 on vm-a).
    assert (unauthorized["affected"], unauthorized["population"]) == (1, 1)
    assert unauthorized["condition"].startswith("1 of 1 production installations")
    assert json.loads(unauthorized["evidence"])["gap_ids"] == [
        gap_ids["installed_unauthorized/5000004/vm-a"]]
    # KEV: both 5000002 gaps have a KEV due date: vm-a's (2026-03-06) is past on 2026-03-10, and
    # vm-b's, moved to 2026-03-08 by EXC-3, too.
    assert (found["kev_overdue"]["affected"], found["kev_overdue"]["population"]) == (2, 2)
    # Internal: 5 open gaps; 5000001 twice (due 02-14) is past; 5000002 (03-12, 03-14) and
    # 5000003 (04-11 after the pause) are not.
    assert (found["overdue_internal"]["affected"], found["overdue_internal"]["population"]) == (2, 5)
    assert (found["overdue_pci_dss"]["affected"], found["overdue_pci_dss"]["population"]) == (1, 1)
    # FedRAMP: only vm-a 5000001 (detected 02-05, due 03-07) is past.
    assert (found["overdue_fedramp"]["affected"], found["overdue_fedramp"]["population"]) == (1, 5)
    # BOD 26-04: vm-a 5000001 (02-19), vm-a 5000002 (02-23), vm-b 5000002 (03-08) out of those 3.
    assert (found["overdue_cisa_bod2604"]["affected"], found["overdue_cisa_bod2604"]["population"]) == (3, 3)
    for row in found.values():
        assert row["criteria"] and row["condition"] and row["cause"] and row["effect"]
        assert row["recommendation"]


def test_ids_are_stable_across_builds_and_stage5_ids_kept(tmp_path):
    conn = build_audit(tmp_path / "w.duckdb")
    first = findings(conn)
    build_table(conn, "marts.compliance_gaps", params={"as_of": AS_OF})
    build_table(conn, "marts.audit_findings", params={"as_of": AS_OF})
    second = findings(conn)
    kept = conn.execute(
        "SELECT count(*) FROM marts.audit_findings JOIN marts.authorization_findings USING (finding_id)"
    ).fetchall()[0][0]
    conn.close()
    assert {r: f["finding_id"] for r, f in first.items()} == {r: f["finding_id"] for r, f in second.items()}
    assert first == second
    assert kept == 1
    assert len({f["finding_id"] for f in first.values()}) == len(first)
