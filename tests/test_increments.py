"""pipelines/increments.py on planted builds: which days a table recomputes, and why."""

from __future__ import annotations

from datetime import date

import duckdb
import pytest

from pipelines import increments


@pytest.fixture
def conn():
    conn = duckdb.connect()
    conn.execute("CREATE SCHEMA staging")
    conn.execute("CREATE SCHEMA marts")
    conn.execute("CREATE TABLE marts.history (day DATE)")
    yield conn
    conn.close()


def _build(conn, target, basis, as_of, upstream=(), from_day=None, full=False):
    """Plan and record a build of `target`, logging `from_day` as what it recomputed."""
    built = increments.plan(conn, target, basis, as_of, upstream=upstream)
    if full:
        built = increments.Plan(target, None, "planted", basis, built.consumed_seq)
    elif from_day is not None:
        built = increments.Plan(target, from_day, "planted", basis, built.consumed_seq)
    increments.record(conn, built, as_of)
    return built


def test_first_build_then_the_days_after_the_previous_date(conn):
    first = increments.plan(conn, "marts.history", "b1", date(2026, 3, 10))
    assert (first.from_day, first.reason) == (None, "first build")
    increments.record(conn, first, date(2026, 3, 10))
    # Two days later, nothing upstream: the two new days.
    later = increments.plan(conn, "marts.history", "b1", date(2026, 3, 12))
    assert (later.from_day, later.reason) == (date(2026, 3, 11), "new days")
    # The same date again: nothing to recompute (the day after it).
    increments.record(conn, later, date(2026, 3, 12))
    same = increments.plan(conn, "marts.history", "b1", date(2026, 3, 12))
    assert (same.from_day, same.reason) == (date(2026, 3, 13), "nothing new")


def test_upstream_changes_since_the_last_build_set_the_first_day(conn):
    conn.execute("CREATE TABLE staging.obs (day DATE)")
    _build(conn, "staging.obs", "o", None, full=True)
    _build(conn, "marts.history", "b1", date(2026, 3, 10), upstream=["staging.obs"])
    # The observations change twice (days from 3-07, then from 3-09) before the history runs.
    _build(conn, "staging.obs", "o", None, from_day=date(2026, 3, 7))
    _build(conn, "staging.obs", "o", None, from_day=date(2026, 3, 9))
    built = increments.plan(conn, "marts.history", "b1", date(2026, 3, 11), upstream=["staging.obs"])
    assert built.from_day == date(2026, 3, 7)  # the earlier of 3-07, 3-09 and the new day 3-11
    assert built.reason == "new or changed data for earlier days" and built.late
    increments.record(conn, built, date(2026, 3, 11))
    # Consumed: the next build sees only what came after.
    _build(conn, "staging.obs", "o", None, from_day=date(2026, 3, 12))
    built = increments.plan(conn, "marts.history", "b1", date(2026, 3, 12), upstream=["staging.obs"])
    assert (built.from_day, built.reason, built.late) == (date(2026, 3, 12), "new days", False)


def test_an_upstream_build_that_changed_no_day_recomputes_nothing(conn):
    conn.execute("CREATE TABLE staging.obs (day DATE)")
    conn.execute("CREATE TABLE marts.state (day DATE)")
    _build(conn, "staging.obs", "o", None, full=True)
    _build(conn, "marts.history", "b1", date(2026, 3, 10), upstream=["staging.obs"])
    _build(conn, "marts.state", "s1", date(2026, 3, 10), upstream=["marts.history"])
    # The observations ran and changed no day: they log date.max.
    _build(conn, "staging.obs", "o", None, from_day=date.max)
    history = _build(conn, "marts.history", "b1", date(2026, 3, 10), upstream=["staging.obs"])
    assert (history.from_day, history.reason, history.idle) == (date(2026, 3, 11), "nothing new", True)
    assert history.metadata() == {"increment/recomputed_from": "no day", "increment/reason": "nothing new"}
    assert history.describe() == "marts.history: no day (nothing new)"
    # The history logged the day after its date (3-11), which is no change for a table of 3-10.
    state = increments.plan(conn, "marts.state", "s1", date(2026, 3, 10), upstream=["marts.history"])
    assert state.metadata() == {"increment/recomputed_from": "no day", "increment/reason": "nothing new"}
    # A day later, the new day only (not 9999-12-31, nor a day after the date).
    _build(conn, "staging.obs", "o", None, from_day=date(2026, 3, 11))
    history = increments.plan(conn, "marts.history", "b1", date(2026, 3, 11), upstream=["staging.obs"])
    assert (history.metadata()["increment/recomputed_from"], history.reason) == ("2026-03-11", "new days")


def test_what_rebuilds_everything(conn):
    conn.execute("CREATE TABLE staging.obs (day DATE)")
    _build(conn, "staging.obs", "o", None, full=True)
    _build(conn, "marts.history", "b1", date(2026, 3, 10), upstream=["staging.obs"])
    assert increments.plan(conn, "marts.history", "b2", date(2026, 3, 11), basis_reason="SQL changed").reason \
        == "SQL changed"
    moved_back = increments.plan(conn, "marts.history", "b1", date(2026, 3, 9))
    assert (moved_back.from_day, moved_back.reason) == (None, "evaluation date moved back")
    _build(conn, "staging.obs", "o", None, full=True)
    rebuilt = increments.plan(conn, "marts.history", "b1", date(2026, 3, 11), upstream=["staging.obs"])
    assert (rebuilt.from_day, rebuilt.reason) == (None, "an upstream table was rebuilt in full")


def test_fingerprint_follows_content_not_order(conn):
    conn.execute("CREATE TABLE staging.policy AS SELECT * FROM (VALUES ('Critical', 15), ('High', 30)) t(s, d)")
    before = increments.fingerprint(conn, ["staging.policy"], "SELECT 1")
    conn.execute("CREATE OR REPLACE TABLE staging.policy AS SELECT * FROM (VALUES ('High', 30), ('Critical', 15)) t(s, d)")
    assert increments.fingerprint(conn, ["staging.policy"], "SELECT 1") == before
    assert increments.fingerprint(conn, ["staging.policy"], "SELECT 2") != before
    conn.execute("UPDATE staging.policy SET d = 14 WHERE s = 'Critical'")
    assert increments.fingerprint(conn, ["staging.policy"], "SELECT 1") != before
    # A query counts only its columns.
    only = "SELECT s FROM staging.policy"
    key = increments.fingerprint(conn, [only])
    conn.execute("UPDATE staging.policy SET d = 99")
    assert increments.fingerprint(conn, [only]) == key


def test_changed_keys(conn):
    conn.execute("CREATE TABLE staging.sev AS SELECT * FROM (VALUES ('1', 'Critical'), ('2', 'Low')) t(k, s)")
    query = "SELECT k AS key, hash(s) AS content FROM staging.sev"
    assert increments.changed_keys(conn, "marts.t", "sev", query) == ["1", "2"]  # all new
    assert increments.changed_keys(conn, "marts.t", "sev", query) == []
    conn.execute("UPDATE staging.sev SET s = 'High' WHERE k = '2'")
    conn.execute("INSERT INTO staging.sev VALUES ('3', 'Low')")
    assert increments.changed_keys(conn, "marts.t", "sev", query, include_new=False) == ["2"]
    conn.execute("DELETE FROM staging.sev WHERE k = '1'")
    assert increments.changed_keys(conn, "marts.t", "sev", query) == ["1"]  # gone
    # Each target keeps its own snapshot.
    assert increments.changed_keys(conn, "marts.other", "sev", query, include_new=False) == []
