"""The tamper-evident ledger: register edits are findings, ledger edits fail verification."""

from __future__ import annotations

import pytest
from fixtures_registers import event, materialize, query, write_register

from assets import authorization as stage5
from pipelines.ledger import verify_ledger
from pipelines.resources import connect_warehouse

ASSETS = [
    stage5.patch_tests,
    stage5.authorization_events_register,
    stage5.exceptions,
    stage5.register_ledger,
    *stage5.ledger_chain_checks,
    stage5.no_register_tampering,
    stage5.authorization_events,
]

EVENTS = [
    event("e1", "5001", "win-web", "production", "", "proposed", "alice", "requester",
          "2026-10-01T09:00:00Z"),
    event("e2", "5001", "win-web", "production", "proposed", "in_test", "bob", "tester",
          "2026-10-02T09:00:00Z"),
    event("e3", "5001", "win-web", "production", "in_test", "authorized", "carol", "approver",
          "2026-10-03T09:00:00Z"),
]


@pytest.fixture
def estate(tmp_path):
    estate = tmp_path / "estate"
    write_register(estate, "authorization_events", EVENTS)
    assert materialize(ASSETS, tmp_path, estate).success
    return estate


def ledger_rows(tmp_path):
    return query(tmp_path, "SELECT seq, row_id, content FROM ledger.authorization_events ORDER BY seq")


def tamper(tmp_path):
    return query(tmp_path, "SELECT row_id, kind FROM ledger.tamper_findings ORDER BY row_id, kind")


def verify(tmp_path):
    conn = connect_warehouse(str(tmp_path / "w.duckdb"))
    try:
        return verify_ledger(conn)
    finally:
        conn.close()


def test_first_run_chains_every_row(tmp_path, estate):
    rows = query(tmp_path, """
        SELECT seq, row_id, row_sha256 = sha256(content),
               chain_sha256 = sha256(prev_sha256 || row_sha256)
        FROM ledger.authorization_events ORDER BY seq""")
    assert rows == [(1, "e1", True, True), (2, "e2", True, True), (3, "e3", True, True)]
    assert verify(tmp_path) == []
    assert tamper(tmp_path) == []


def test_appended_rows_extend_the_chain(tmp_path, estate):
    write_register(estate, "authorization_events", [*EVENTS, event(
        "e4", "5001", "win-web", "production", "authorized", "revoked", "carol", "approver",
        "2026-10-05T09:00:00Z")])
    assert materialize(ASSETS, tmp_path, estate).success
    assert [r[:2] for r in ledger_rows(tmp_path)] == [(1, "e1"), (2, "e2"), (3, "e3"), (4, "e4")]
    assert tamper(tmp_path) == [] and verify(tmp_path) == []


def test_edited_register_row_is_a_finding_and_the_original_is_kept(tmp_path, estate):
    original = ledger_rows(tmp_path)
    edited = [dict(e) for e in EVENTS]
    edited[1]["actor"] = "mallory"
    write_register(estate, "authorization_events", edited)
    result = materialize(ASSETS, tmp_path, estate)
    assert result.success
    assert tamper(tmp_path) == [("e2", "changed")]
    assert ledger_rows(tmp_path) == original  # nothing rewritten
    assert '"actor":"bob"' in original[1][2]
    assert verify(tmp_path) == []
    warn = [c for c in result.get_asset_check_evaluations() if c.check_name == "no_register_tampering"]
    assert not warn[0].passed
    # Seen again on the next run: recorded once, with the run that first saw it.
    assert materialize(ASSETS, tmp_path, estate).success
    assert query(tmp_path, "SELECT count(*) FROM ledger.tamper_findings") == [(1,)]


def test_deleted_register_row_is_a_finding(tmp_path, estate):
    write_register(estate, "authorization_events", [EVENTS[0], EVENTS[2]])
    assert materialize(ASSETS, tmp_path, estate).success
    assert tamper(tmp_path) == [("e2", "removed")]
    assert [r[1] for r in ledger_rows(tmp_path)] == ["e1", "e2", "e3"]


def test_reordered_register_rows_are_a_finding(tmp_path, estate):
    write_register(estate, "authorization_events", [EVENTS[1], EVENTS[0], EVENTS[2]])
    assert materialize(ASSETS, tmp_path, estate).success
    assert tamper(tmp_path) == [("e1", "reordered"), ("e2", "reordered")]


def _alter(tmp_path, sql):
    conn = connect_warehouse(str(tmp_path / "w.duckdb"))
    try:
        conn.execute(sql)
    finally:
        conn.close()


def test_flipped_byte_in_a_ledger_row_fails_verification(tmp_path, estate):
    _alter(tmp_path, "UPDATE ledger.authorization_events "
                     "SET content = replace(content, 'carol', 'carol!') WHERE seq = 3")
    problems = verify(tmp_path)
    assert [(p.seq, p.kind) for p in problems] == [(3, "content_altered")]
    # The blocking check stops what reads the authorization log.
    result = materialize(ASSETS, tmp_path, estate, raise_on_error=False)
    assert not result.success
    assert not [e for e in result.get_asset_materialization_events()
                if e.asset_key.path == ["marts", "authorization_events"]]


def test_deleted_ledger_row_fails_verification(tmp_path, estate):
    _alter(tmp_path, "DELETE FROM ledger.authorization_events WHERE seq = 2")
    kinds = {(p.seq, p.kind) for p in verify(tmp_path)}
    assert (3, "broken_link") in kinds and (3, "sequence_gap") in kinds


def test_deleted_last_ledger_row_fails_against_the_chain_head(tmp_path, estate):
    _alter(tmp_path, "DELETE FROM ledger.authorization_events WHERE seq = 3")
    assert [(p.seq, p.kind) for p in verify(tmp_path)] == [(3, "head_mismatch")]


def test_reordered_ledger_rows_fail_verification(tmp_path, estate):
    _alter(tmp_path, "UPDATE ledger.authorization_events "
                     "SET seq = CASE seq WHEN 1 THEN 2 WHEN 2 THEN 1 ELSE seq END")
    kinds = {p.kind for p in verify(tmp_path)}
    assert "broken_link" in kinds
