"""Stage 5: the authorization state machine, its findings, rogue patches and the patch lifecycle."""

from __future__ import annotations

import json

import pytest
from fixtures_registers import (
    VM_A,
    VM_B,
    VM_C,
    create_install_tables,
    event,
    materialize,
    query,
    write_register,
)

from assets import authorization as stage5
from pipelines.sources.registers import assets as register_assets

ASSETS = [
    register_assets.patch_tests,
    register_assets.authorization_events_register,
    register_assets.exceptions,
    register_assets.support_incidents,
    register_assets.rollbacks,
    register_assets.register_ledger,
    *register_assets.ledger_chain_checks,
    stage5.authorization_events,
    stage5.authorization_status,
    stage5.authorization_findings,
    stage5.rogue_patches,
    stage5.authorization_install_findings,
    stage5.patch_lifecycle,
]


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("stage5")
    estate = tmp_path / "estate"
    write_register(estate, "patch_tests", [
        {"test_id": "T1", "patch_key": "KB5001", "asset_category": "win-web", "environment": "staging",
         "started_at": "2026-10-01T10:00:00Z", "ended_at": "2026-10-02T10:00:00Z",
         "result": "passed", "tester": "bob"},
        {"test_id": "T2", "patch_key": "5002", "asset_category": "win-web", "environment": "test",
         "ended_at": "2026-10-02T10:00:00Z", "result": "failed", "failure_reason": "breaks IIS",
         "incident_ids": "INC2", "tester": "carol"},
        {"test_id": "T3", "patch_key": "5002", "asset_category": "win-web", "environment": "test",
         "ended_at": "2026-10-10T10:00:00Z", "result": "passed", "tester": "carol"},
        {"test_id": "T4", "patch_key": "5003", "asset_category": "win-sql", "environment": "test",
         "ended_at": "2026-10-02T10:00:00Z", "result": "failed",
         "failure_reason": "SQL service hang", "tester": "dave"},
    ])
    write_register(estate, "authorization_events", [
        # 5001: bob tests and approves it (tester = approver).
        event("e1", "KB5001", "win-web", "production", "", "proposed", "alice", "requester",
              "2026-10-01T09:00:00Z", justification="Critical RCE"),
        event("e2", "KB5001", "win-web", "production", "proposed", "in_test", "bob", "tester",
              "2026-10-01T12:00:00Z"),
        event("e3", "KB5001", "win-web", "production", "in_test", "authorized", "bob", "approver",
              "2026-10-03T09:00:00+02:00", justification="Critical RCE, exploited",
              impact_downtime_minutes="15", impact_reboot="yes", impact_dependencies="KB4999",
              deploy_order="2", change_ticket="CHG1", emergency="false"),
        # 5002: erin requests and approves it (requester = approver); tested before.
        event("e4", "5002", "win-web", "production", "", "proposed", "erin", "requester",
              "2026-10-01T09:00:00Z"),
        event("e5", "5002", "win-web", "production", "proposed", "in_test", "carol", "tester",
              "2026-10-02T09:00:00Z"),
        event("e6", "5002", "win-web", "production", "in_test", "authorized", "Erin", "approver",
              "2026-10-12T09:00:00Z", justification="Fixed build"),
        # 5004: authorized for production without any test; lapsed on 11-20.
        event("e7", "5004", "win-web", "production", "", "proposed", "alice", "requester",
              "2026-11-01T09:00:00Z"),
        event("e8", "5004", "win-web", "production", "proposed", "in_test", "bob", "tester",
              "2026-11-02T09:00:00Z"),
        event("e9", "5004", "win-web", "production", "in_test", "authorized", "frank", "approver",
              "2026-11-03T09:00:00Z", expires_at="2026-11-20T00:00:00Z"),
        # 5005: emergency, skips testing (illegal proposed -> authorized), never reviewed.
        event("e10", "5005", "*", "production", "", "proposed", "alice", "requester",
              "2026-11-01T09:00:00Z"),
        event("e11", "5005", "*", "production", "proposed", "authorized", "frank", "cab",
              "2026-11-01T10:00:00Z", emergency="true", change_ticket="CHG-E1"),
        # 5003: rejected, but the event claims to leave in_test while the scope was proposed.
        event("e12", "5003", "win-sql", "production", "", "proposed", "alice", "requester",
              "2026-10-01T09:00:00Z"),
        event("e13", "5003", "win-sql", "production", "in_test", "rejected", "frank", "approver",
              "2026-10-03T09:00:00Z", justification="Fails in test"),
        # After the as-of date: not part of the state as of 2026-11-27.
        event("e14", "KB5001", "win-web", "production", "authorized", "revoked", "frank",
              "approver", "2026-12-01T09:00:00Z"),
    ])
    write_register(estate, "exceptions", [
        {"exception_id": "X1", "asset_category": "win-web", "patch_key": "5003",
         "reason": "vendor", "requested_by": "gina", "approver": "hank",
         "approved_at": "2026-09-01T00:00:00Z", "expires_at": "2026-11-01T00:00:00Z",
         "status": "active"},
        {"exception_id": "X2", "vm_id": VM_A.upper(), "asset_category": "*", "reason": "legacy app",
         "requested_by": "ivan", "approver": "Ivan", "approved_at": "2026-09-01T00:00:00Z",
         "expires_at": "2027-01-01T00:00:00Z", "status": "active"},
        {"exception_id": "X3", "asset_category": "*", "reason": "old", "requested_by": "gina",
         "approver": "hank", "expires_at": "2026-01-01T00:00:00Z", "status": "revoked"},
    ])
    write_register(estate, "support_incidents", [
        {"incident_id": "INC1", "source": "pss", "external_case_id": "MS-1", "patch_key": "5007",
         "vm_id": VM_C, "opened_at": "2026-11-04T00:00:00Z", "summary": "boot loop"},
        {"incident_id": "INC2", "source": "internal", "patch_key": "5002",
         "opened_at": "2026-10-02T11:00:00Z", "summary": "IIS down in test"},
    ])
    write_register(estate, "rollbacks", [
        {"rollback_id": "R1", "vm_id": VM_B, "patch_key": "KB5007",
         "rolled_back_at": "2026-11-03T00:00:00Z", "reason": "app crash", "actor": "ops"},
    ])
    create_install_tables(
        tmp_path,
        inventory=[
            (VM_A, "web-a", "production", "win-web", "Windows Server 2022", "10.0.20348.2340"),
            (VM_B, "web-b", "production", "win-web", "Windows Server 2022", "10.0.20348.1000"),
            (VM_C, "web-c", "test", "win-web", "Windows Server 2022", "10.0.20348.2340"),
        ],
        observations=[
            (VM_A, "5002", "installed", "2026-10-11T00:00:00Z"),  # a day before its approval
            (VM_B, "5001", "installed", "2026-10-05T00:00:00Z"),  # approved and tested
            (VM_B, "5006", "installed", "2026-10-05T00:00:00Z"),  # neither approved nor tested
            (VM_C, "5006", "installed", "2026-10-05T00:00:00Z"),  # test VM: out of scope
            (VM_A, "5007", "failed", "2026-11-02T00:00:00Z"),
            (VM_B, "5007", "installed", "2026-11-01T00:00:00Z"),
            (VM_C, "5007", "installed", "2026-11-01T00:00:00Z"),
        ],
    )
    result = materialize(ASSETS, tmp_path, estate)
    assert result.success
    return tmp_path


def findings(tmp_path, table="marts.authorization_findings"):
    return {
        (rule, subject): json.loads(evidence)
        for rule, subject, evidence in query(tmp_path, f"SELECT rule, subject, evidence FROM {table}")
    }


def test_status_follows_the_state_machine_as_of(warehouse):
    rows = {
        (r[0], r[1], r[2]): r[3:]
        for r in query(warehouse, """
            SELECT patch_key, asset_category, environment, status, strftime(status_since, '%Y-%m-%d'),
                   strftime(authorized_at, '%Y-%m-%dT%H:%M'), requester, approver, change_ticket,
                   emergency, deploy_order, impact_dependencies
            FROM marts.authorization_status""")
    }
    assert rows[("5001", "win-web", "production")] == (
        "authorized", "2026-10-03", "2026-10-03T07:00", "alice", "bob", "CHG1", False, 2, ["4999"])
    assert rows[("5004", "win-web", "production")][:2] == ("expired", "2026-11-20")
    assert rows[("5005", "*", "production")][0] == "authorized"
    assert rows[("5005", "*", "production")][6] is True
    assert rows[("5003", "win-sql", "production")][0] == "rejected"
    assert rows[("5003", "win-sql", "production")][4] is None  # never authorized: no approver
    assert len(rows) == 5


def test_status_columns_follow_the_contract(warehouse):
    columns = query(warehouse, """
        SELECT column_name, data_type FROM duckdb_columns()
        WHERE schema_name = 'marts' AND table_name = 'authorization_status' ORDER BY column_index""")
    assert columns == [
        ("patch_key", "VARCHAR"), ("asset_category", "VARCHAR"), ("environment", "VARCHAR"),
        ("status", "VARCHAR"), ("status_since", "TIMESTAMP WITH TIME ZONE"),
        ("authorized_at", "TIMESTAMP WITH TIME ZONE"), ("requester", "VARCHAR"),
        ("approver", "VARCHAR"), ("change_ticket", "VARCHAR"), ("emergency", "BOOLEAN"),
        ("deploy_order", "INTEGER"), ("impact_dependencies", "VARCHAR[]"),
    ]
    undocumented = query(warehouse, """
        SELECT table_name, column_name FROM duckdb_columns()
        WHERE schema_name IN ('marts', 'staging') AND comment IS NULL
          AND table_name IN ('authorization_status', 'authorization_events',
                             'authorization_findings', 'authorization_install_findings',
                             'rogue_patches', 'patch_lifecycle', 'patch_tests', 'exceptions')""")
    assert undocumented == []


def test_event_log_marks_illegal_transitions(warehouse):
    rows = {r[0]: r[1:] for r in query(warehouse, """
        SELECT event_id, scope_seq, previous_state, transition_legal, from_state_matches, requester
        FROM marts.authorization_events""")}
    assert "e14" not in rows  # after the as-of date
    assert rows["e3"] == (3, "in_test", True, True, "alice")
    assert rows["e11"] == (2, "proposed", False, True, "alice")
    assert rows["e13"] == (2, "proposed", True, False, "alice")


def test_each_planted_case_is_found(warehouse):
    found = findings(warehouse)
    assert found[("sod_tester_approver", "authorization_event/e3")]["test_ids"] == ["T1"]
    assert ("sod_requester_approver", "authorization_event/e6") in found
    assert ("production_without_test", "authorization_event/e9") in found
    assert ("emergency_without_pir", "authorization_event/e11") in found
    assert ("illegal_transition", "authorization_event/e11") in found
    assert ("illegal_transition", "authorization_event/e13") in found
    assert found[("exception_expired_active", "exception/X1")]["status"] == "active"
    assert ("exception_self_approved", "exception/X2") in found
    # Nothing else: the clean cases stay clean (5002 was tested, 5005 is an emergency, X3 revoked).
    assert len(found) == 8


def test_install_findings(warehouse):
    found = findings(warehouse, "marts.authorization_install_findings")
    late = found[("install_before_approval", f"vm/{VM_A}/patch/5002")]
    assert late["authorized_later_at"].startswith("2026-10-12")
    assert ("install_before_approval", f"vm/{VM_B}/patch/5006") in found
    assert ("production_install_without_test", f"vm/{VM_B}/patch/5006") in found
    assert ("install_before_approval", f"vm/{VM_B}/patch/5001") not in found
    assert ("production_install_without_test", f"vm/{VM_A}/patch/5002") not in found
    assert not any(subject.startswith(f"vm/{VM_C}") for _, subject in found)  # test VM
    assert ("rogue_patch", "patch/5007") in found


def test_finding_ids_are_sha256_of_rule_and_subject(warehouse):
    rows = query(warehouse, """
        SELECT count(*), count(*) FILTER (WHERE finding_id = sha256(rule || '|' || subject))
        FROM marts.authorization_findings""")
    assert rows[0][0] == rows[0][1] > 0


def test_rogue_patch_recommends_deferral(warehouse):
    rows = query(warehouse, """
        SELECT patch_key, affected_vms, failed_vms, rollback_vms, incident_vms, rollback_ids,
               incident_ids, recommendation FROM marts.rogue_patches""")
    assert rows == [("5007", 3, 1, 1, 1, ["R1"], ["INC1"], "defer")]


def test_patch_lifecycle(warehouse):
    rows = {r[0]: r[1:] for r in query(warehouse, """
        SELECT patch_key, lifecycle, failure_reasons, fixed_by_test_id,
               strftime(first_production_install_at, '%Y-%m-%d'), incident_ids,
               authorization_by_scope, approvals, justification, impact_reboot
        FROM marts.patch_lifecycle""")}
    assert rows["5003"][:4] == ("failed_never_applied", ["SQL service hang"], None, None)
    assert rows["5002"][:5] == ("failed_then_applied", ["breaks IIS"], "T3", "2026-10-11", ["INC2"])
    assert rows["5001"][5:] == (
        ["win-web/production=authorized"], ["bob at 2026-10-03T07:00:00Z (win-web/production)"],
        "Critical RCE, exploited", "yes")
    assert rows["5007"][0] == "untested"
