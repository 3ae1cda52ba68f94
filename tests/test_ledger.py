"""The tamper-evident ledger: register edits are findings, ledger edits fail verification."""

from __future__ import annotations

import hashlib
import json

import pytest
from fixtures_registers import event, materialize, query, write_register

from assets import authorization as stage5
from pipelines.ledger import GENESIS, chain_hash, verify_ledger
from pipelines.resources import connect_warehouse
from pipelines.sources.registers import assets as register_assets

ASSETS = [
    register_assets.patch_tests,
    register_assets.authorization_events_register,
    register_assets.exceptions,
    register_assets.register_ledger,
    *register_assets.ledger_chain_checks,
    register_assets.no_register_tampering,
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


FINDING_ASSETS = [*ASSETS, stage5.authorization_findings]


def findings(tmp_path):
    return query(tmp_path, "SELECT rule, subject, condition FROM marts.authorization_findings "
                           "ORDER BY rule, subject")


def test_an_edit_that_hides_a_self_approval_keeps_the_finding_and_names_the_change(tmp_path):
    estate = tmp_path / "estate"
    # alice requests and then approves: separation of duties broken.
    self_approved = [dict(e) for e in EVENTS]
    self_approved[2]["actor"] = "alice"
    write_register(estate, "authorization_events", self_approved)
    assert materialize(FINDING_ASSETS, tmp_path, estate).success
    # (no test was recorded either: production_without_test)
    before = [("production_without_test", "authorization_event/e3"),
              ("sod_requester_approver", "authorization_event/e3")]
    assert [f[:2] for f in findings(tmp_path)] == before
    # The approver is rewritten in place to someone else.
    write_register(estate, "authorization_events", EVENTS)
    assert materialize(FINDING_ASSETS, tmp_path, estate).success
    (finding_id, kind, details), = query(
        tmp_path, "SELECT finding_id, kind, details FROM ledger.tamper_findings")
    assert kind == "changed"
    assert json.loads(details)["changes"] == [{"field": "actor", "recorded": "alice", "new": "carol"}]
    # The control is judged on the first-recorded row: the finding stays, beside the tampering.
    after = findings(tmp_path)
    assert [f[:2] for f in after] == [before[0], ("register_tampered", f"tamper_finding/{finding_id}"),
                                      before[1]]
    assert after[1][2] == ("registers/authorization_events.csv row e3 was changed after it was "
                           "first recorded: actor recorded alice now carol")
    assert query(tmp_path, "SELECT actor FROM staging.authorization_events WHERE event_id = 'e3'") \
        == [("alice",)]


def test_a_row_inserted_between_recorded_rows_is_a_finding(tmp_path, estate):
    backdated = event("e2b", "5001", "win-web", "production", "in_test", "authorized", "carol",
                      "approver", "2026-10-02T10:00:00Z")
    write_register(estate, "authorization_events", [EVENTS[0], backdated, EVENTS[1], EVENTS[2]])
    assert materialize(ASSETS, tmp_path, estate).success
    rows = query(tmp_path, "SELECT row_id, kind, details FROM ledger.tamper_findings")
    assert [(r[0], r[1]) for r in rows] == [("e2b", "inserted")]
    details = json.loads(rows[0][2])
    assert details["observed_register_row"] == 2
    assert details["changes"][0]["field"] == "(row)" and '"event_id":"e2b"' in details["changes"][0]["new"]
    # It joined the chain last; the next run does not call the rows after it reordered.
    assert [r[1] for r in ledger_rows(tmp_path)] == ["e1", "e2", "e3", "e2b"]
    assert materialize(ASSETS, tmp_path, estate).success
    assert query(tmp_path, "SELECT row_id, kind FROM ledger.tamper_findings") == [("e2b", "inserted")]


def test_a_deleted_warehouse_is_rebuilt_with_its_ledger_from_the_files(tmp_path, estate):
    original = query(tmp_path, "SELECT seq, row_id, content, chain_sha256, first_seen_run "
                               "FROM ledger.authorization_events ORDER BY seq")
    lines = (tmp_path / "ledger" / "authorization_events.jsonl").read_text().splitlines()
    assert len(lines) == 3
    # The register is edited, then the warehouse is lost: the ledger keeps the first version.
    edited = [dict(e) for e in EVENTS]
    edited[1]["actor"] = "mallory"
    write_register(estate, "authorization_events", edited)
    (tmp_path / "w.duckdb").unlink()
    assert materialize(ASSETS, tmp_path, estate).success
    assert query(tmp_path, "SELECT seq, row_id, content, chain_sha256, first_seen_run "
                           "FROM ledger.authorization_events ORDER BY seq") == original
    assert tamper(tmp_path) == [("e2", "changed")]
    assert verify(tmp_path) == []
    assert len((tmp_path / "ledger" / "authorization_events.jsonl").read_text().splitlines()) == 3


def test_an_altered_ledger_file_fails_naming_file_line_and_field(tmp_path, estate):
    path = tmp_path / "ledger" / "authorization_events.jsonl"
    lines = path.read_text().splitlines()
    lines[1] = lines[1].replace("bob", "mallory")
    path.write_text("\n".join(lines) + "\n")
    (tmp_path / "w.duckdb").unlink()
    result = materialize(ASSETS, tmp_path, estate, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    message = failure.step_failure_data.error.cause.message
    assert f"{path}: line 2: field row_sha256 does not verify (row e2)" in message


def test_an_exception_approved_after_the_as_of_date_is_not_judged_yet(tmp_path):
    estate = tmp_path / "estate"
    write_register(estate, "authorization_events", EVENTS)
    # Both self-approved; X2 on the day after the evaluation date (fixtures AS_OF 2026-11-27).
    write_register(estate, "exceptions", [
        {"exception_id": "X1", "asset_category": "*", "reason": "legacy", "requested_by": "gina",
         "approver": "gina", "approved_at": "2026-11-27T23:00:00Z", "status": "active",
         "expires_at": "2027-01-31T00:00:00Z"},
        {"exception_id": "X2", "asset_category": "*", "reason": "legacy", "requested_by": "gina",
         "approver": "gina", "approved_at": "2026-11-28T00:00:00Z", "status": "active",
         "expires_at": "2027-01-31T00:00:00Z"},
    ])
    assert materialize(FINDING_ASSETS, tmp_path, estate).success
    assert [f[:2] for f in findings(tmp_path) if f[0].startswith("exception")] == [
        ("exception_self_approved", "exception/X1")]


def test_a_ledger_file_behind_the_warehouse_is_completed(tmp_path, estate):
    path = tmp_path / "ledger" / "authorization_events.jsonl"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:2]) + "\n")
    assert materialize(ASSETS, tmp_path, estate).success
    assert path.read_text().splitlines() == lines


def test_a_ledger_file_that_disagrees_with_the_warehouse_fails(tmp_path, estate):
    path = tmp_path / "ledger" / "authorization_events.jsonl"
    # Another, valid chain: the same three rows with the first one's content changed and rehashed.
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    prev = GENESIS
    for row in rows:
        row["content"] = row["content"].replace("alice", "mallory")
        row["row_sha256"] = hashlib.sha256(row["content"].encode()).hexdigest()
        row["prev_sha256"], row["chain_sha256"] = prev, chain_hash(prev, row["row_sha256"])
        prev = row["chain_sha256"]
    path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    result = materialize(ASSETS, tmp_path, estate, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert (f"{path}: line 1: field content differs from ledger.authorization_events seq 1"
            in failure.step_failure_data.error.cause.message)


def _ledger_unchanged(result) -> bool:
    (event,) = [e for e in result.get_asset_materialization_events()
                if e.asset_key.path == ["ledger", "authorization_events"]]
    return event.materialization.metadata["unchanged"].value


def test_a_run_with_nothing_changed_appends_and_rebuilds_nothing(tmp_path, estate):
    heads = query(tmp_path, "SELECT * FROM ledger.chain_heads ORDER BY ALL")
    assert [h[:2] for h in heads] == [("authorization_events", 3)]  # the first run's one append
    result = materialize(ASSETS, tmp_path, estate)
    assert result.success and _ledger_unchanged(result)
    assert query(tmp_path, "SELECT * FROM ledger.chain_heads ORDER BY ALL") == heads
    # The staging table no longer what the ledger rebuilt (as a register asset may leave it): the
    # ledger step alone runs again and rebuilds it from the first-recorded rows.
    _alter(tmp_path, "DELETE FROM staging.authorization_events WHERE event_id = 'e2'")
    result = materialize([register_assets.register_ledger], tmp_path, estate)
    assert result.success and not _ledger_unchanged(result)
    assert query(tmp_path, "SELECT event_id FROM staging.authorization_events ORDER BY 1") == [
        ("e1",), ("e2",), ("e3",)]
    # A ledger file edited since is read again, and fails as before.
    path = tmp_path / "ledger" / "authorization_events.jsonl"
    path.write_text(path.read_text().replace("bob", "mallory"))
    result = materialize(ASSETS, tmp_path, estate, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert f"{path}: line 2: field row_sha256 does not verify (row e2)" in failure.step_failure_data.error.cause.message
