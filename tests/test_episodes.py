"""Remediation episodes on a one-machine history, checked by hand (as of 2026-01-20).

6000001 (Critical, released 2025-12-20): missing 01-01, installed pending reboot 01-03, installed
(reboot completed) 01-05, missing again 01-10 (rollback).
Lineage 7000001 <- 7000002 (7000002 supersedes 7000001; Important, released 2025-12-01 and 2026-01-06):
7000001 missing 01-02, 7000002 missing 01-08, 7000002 installed 01-12 (7000001 never seen again).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from types import SimpleNamespace

import pytest

from assets.trends import state_changes
from pipelines.policy import load_policy, policy_rows
from pipelines.resources import connect_warehouse
from pipelines.warehouse import build_table, replace_table

AS_OF = date(2026, 1, 20)
VM = "/subscriptions/s/resourcegroups/rg/providers/microsoft.compute/virtualmachines/vm-a"


def at(day: int, hour: int = 10) -> datetime:
    return datetime(2026, 1, day, hour, tzinfo=UTC)


def build_history(path, history):
    """Tables the episode SQL reads; history = [(patch_key, state, observed_at, source)]."""
    conn = connect_warehouse(str(path))
    replace_table(conn, "staging.sla_policy", policy_rows(load_policy(None)))
    conn.execute(f"""
        CREATE TABLE marts.vm_inventory AS
        SELECT '{VM}' AS vm_id, 'vm-a' AS name, 'high' AS criticality, 'win-web' AS asset_category,
               'production' AS environment, 'web@contoso.com' AS owner, false AS internet_exposed,
               false AS pci_scope
    """)
    conn.execute("""
        CREATE TABLE marts.patch_catalog AS
        SELECT patch_key, patch_key AS kb, max_severity, CAST(released_at AS TIMESTAMPTZ) AS released_at
        FROM (VALUES ('6000001', 'Critical', '2025-12-20 08:00:00+00'),
                     ('7000001', 'Important', '2025-12-01 08:00:00+00'),
                     ('7000002', 'Important', '2026-01-06 08:00:00+00')) AS t(patch_key, max_severity, released_at)
    """)
    conn.execute("""
        CREATE TABLE marts.patch_cves (patch_key VARCHAR, cve VARCHAR, in_kev BOOLEAN,
                                       kev_date_added DATE, kev_due_date DATE,
                                       ssvc_automatable BOOLEAN, ssvc_technical_impact VARCHAR)
    """)
    conn.execute("""
        CREATE TABLE marts.patch_fix_lineage AS
        SELECT * FROM (VALUES ('6000001', '6000001'), ('7000001', '7000001'), ('7000002', '7000001'))
            AS t(kb, lineage_id)
    """)
    conn.execute("""
        CREATE TABLE marts.patch_supersedence_closure AS
        SELECT '7000002' AS kb, '7000001' AS superseded_kb, 1 AS depth, false AS in_cycle
    """)
    conn.execute("""
        CREATE TABLE marts.vm_patch_history (vm_id VARCHAR, event_seq BIGINT, patch_key VARCHAR,
            kb VARCHAR, msrc_severity VARCHAR, classification VARCHAR, state VARCHAR, source VARCHAR,
            observed_at TIMESTAMPTZ, run_id VARCHAR, source_file VARCHAR)
    """)
    conn.executemany(
        "INSERT INTO marts.vm_patch_history VALUES (?, ?, ?, ?, NULL, 'Security', ?, ?, ?, ?, 'f.json')",
        [[VM, n, key, key, state, source, when, f"run-{n}"]
         for n, (key, state, when, source) in enumerate(history, start=1)],
    )
    return conn


HISTORY = [
    ("6000001", "missing", at(1), "resource_graph_assessment"),
    ("7000001", "missing", at(2), "resource_graph_assessment"),
    ("6000001", "installed_pending_reboot", at(3), "resource_graph_installation"),
    ("6000001", "installed_pending_reboot", at(4), "resource_graph_assessment"),
    ("6000001", "installed", at(5), "resource_graph_assessment"),
    ("7000001", "missing", at(8), "resource_graph_assessment"),
    ("7000002", "missing", at(8), "resource_graph_assessment"),
    ("6000001", "missing", at(10), "resource_graph_assessment"),
    ("7000002", "installed", at(12), "resource_graph_installation"),
]


def episodes(conn):
    build_table(conn, "staging.patch_severity")
    build_table(conn, "marts.patch_bod2604")
    state_changes(conn, AS_OF, None)
    build_table(conn, "marts.remediation_episodes", params={"as_of": AS_OF, "pairs": None})
    result = conn.execute("SELECT * FROM marts.remediation_episodes ORDER BY lineage_id, episode_seq")
    names = [c[0] for c in result.description]
    return [SimpleNamespace(**dict(zip(names, r, strict=True))) for r in result.fetchall()]


@pytest.fixture()
def built(tmp_path):
    conn = build_history(tmp_path / "w.duckdb", HISTORY)
    rows = episodes(conn)
    conn.close()
    return rows


def test_pending_reboot_is_not_a_close(built):
    first = [e for e in built if e.lineage_id == "6000001"][0]
    assert first.opened_at == at(1)
    assert first.closed_at == at(5)  # the reboot, not the install on 01-03
    assert first.closing_patch_key == "6000001" and first.close_reason == "installed"
    assert first.days_open == 4 and first.episode_seq == 1 and not first.reopened
    # Critical, released 2025-12-20: internal due 2026-01-03 (missed), FedRAMP 2026-01-31 (met).
    assert first.sla_internal_due == date(2026, 1, 3) and first.met_sla_internal is False
    assert first.sla_fedramp_due == date(2026, 1, 31) and first.met_sla_fedramp is True
    assert first.sla_pci_due is None and first.met_sla_pci is None  # not pci-scope


def test_regression_reopens(built):
    second = [e for e in built if e.lineage_id == "6000001"][1]
    assert second.episode_seq == 2 and second.reopened
    assert second.opened_at == at(10) and second.closed_at is None
    assert second.days_open == 10  # 01-10 to as_of 01-20
    assert second.met_sla_internal is False  # open past 2026-01-03
    assert second.met_sla_fedramp is None  # due 2026-02-09, not yet decided
    assert second.episode_id != [e for e in built if e.lineage_id == "6000001"][0].episode_id


def test_superseding_patch_carries_the_original_clock(built):
    lineage = [e for e in built if e.lineage_id == "7000001"]
    assert len(lineage) == 1
    e = lineage[0]
    assert e.opened_at == at(2) and e.closed_at == at(12)
    assert e.closing_patch_key == "7000002" and e.opening_patch_key == "7000001"
    assert e.patch_keys == ["7000001", "7000002"]
    assert e.days_open == 10 and not e.reopened
    # Release of the opening patch (2025-12-01) + 30 days for Important.
    assert e.released_at.date() == date(2025, 12, 1)
    assert e.sla_internal_due == date(2025, 12, 31) and e.met_sla_internal is False
    assert e.sla_fedramp_due == date(2026, 2, 1) and e.met_sla_fedramp is True


def test_older_patch_installed_does_not_close(tmp_path):
    """Installing 7000001 (superseded) does not close an episode opened by 7000002."""
    history = [
        ("7000002", "missing", at(2), "resource_graph_assessment"),
        ("7000001", "installed", at(3), "resource_graph_installation"),
    ]
    conn = build_history(tmp_path / "w.duckdb", history)
    rows = episodes(conn)
    conn.close()
    assert len(rows) == 1 and rows[0].closed_at is None and rows[0].days_open == 18


def test_episode_ids_are_stable_and_unique(tmp_path):
    conn = build_history(tmp_path / "w.duckdb", HISTORY)
    first = [e.episode_id for e in episodes(conn)]
    second = [e.episode_id for e in episodes(conn)]
    conn.close()
    assert first == second and len(set(first)) == 3
    assert all(i.startswith("EPI-") and len(i) == 24 for i in first)


def test_state_changes_continue_day_by_day(tmp_path):
    """The changes the episodes read, built to 01-03 and then from 01-04 on: the pending reboot
    seen again on 01-04 and 7000001 missing again on 01-08 continue the states kept (no change);
    the rollback on 01-10 follows the installation kept from 01-05."""
    conn = build_history(tmp_path / "w.duckdb", HISTORY)
    state_changes(conn, date(2026, 1, 3), None)
    assert conn.execute("SELECT count(*) FROM staging.patch_state_changes").fetchone()[0] == 3
    state_changes(conn, AS_OF, date(2026, 1, 4))
    rows = conn.execute("SELECT patch_key, lineage_id, state, day(observed_at) FROM staging.patch_state_changes "
                        "ORDER BY observed_at, patch_key").fetchall()
    conn.close()
    assert rows == [
        ("6000001", "6000001", "missing", 1),
        ("7000001", "7000001", "missing", 2),
        ("6000001", "6000001", "installed_pending_reboot", 3),
        ("6000001", "6000001", "installed", 5),
        ("7000002", "7000001", "missing", 8),
        ("6000001", "6000001", "missing", 10),
        ("7000002", "7000001", "installed", 12),
    ]
