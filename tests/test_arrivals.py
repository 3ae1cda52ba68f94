"""As known then and as corrected since: each file version and register row keeps when it arrived,
a pack for a past date lists what arrived after it, and the pack as known then leaves it out.

The demo estate of conftest.demo_run runs 2026-10-29 .. 2026-11-27. Its scan exports land at
22:00 UTC on the day they are named for, the registers on the last day, and
patchassessmentresources-2026-11-02.json five days late, on 2026-11-07 (pipelines/demo/landing.py).
"""

from __future__ import annotations

import csv
import json
import os
import re
from datetime import UTC, date, datetime

import duckdb
import pytest

from pipelines.ingest.files import plan_ingest
from pipelines.pastdate import rebuild_pack
from pipelines.verification import verify_manifest

PAST = date(2026, 11, 5)
LATE_FILE = "azure/resource_graph/patchassessmentresources-2026-11-02.json"
LATE_LANDED = datetime(2026, 11, 7, 22, 0, tzinfo=UTC)
REGISTERS_LANDED = datetime(2026, 11, 27, 22, 0, tzinfo=UTC)
# The end of 2026-11-05 (UTC): what arrived before it had arrived by the date.
CUTOFF = datetime(2026, 11, 6, tzinfo=UTC)


def rows(path):
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_a_file_keeps_the_landing_time_first_recorded(tmp_path):
    base = tmp_path / "estate"
    base.mkdir()
    first, second = base / "a.json", base / "b.json"
    first.write_text("1")
    second.write_text("2")
    landed = datetime(2026, 10, 1, 22, 0, tzinfo=UTC)
    os.utime(first, (landed.timestamp(), landed.timestamp()))
    os.utime(second, (landed.timestamp() + 3600, landed.timestamp() + 3600))
    conn = duckdb.connect()
    conn.execute("CREATE SCHEMA raw")
    plan_ingest(conn, "raw.t", {"v": "VARCHAR"}, [first, second], base)
    recorded = "SELECT source_file, landed_at FROM raw.ingested_files ORDER BY source_file"
    assert conn.execute(recorded).fetchall() == [
        ("a.json", landed), ("b.json", datetime(2026, 10, 1, 23, 0, tzinfo=UTC))]
    # Touched later: a full reload still records when it first landed.
    os.utime(first, (landed.timestamp() + 86400, landed.timestamp() + 86400))
    plan_ingest(conn, "raw.t", {"v": "VARCHAR"}, [first, second], base, full_reload=True)
    assert conn.execute(recorded).fetchall()[0] == ("a.json", landed)
    # A new version of the file is a new arrival, at its own landing time.
    first.write_text("1, corrected")
    corrected = datetime(2026, 10, 9, 8, 30, tzinfo=UTC)
    os.utime(first, (corrected.timestamp(), corrected.timestamp()))
    plan_ingest(conn, "raw.t", {"v": "VARCHAR"}, [first, second], base)
    assert conn.execute(recorded).fetchall()[0] == ("a.json", corrected)
    assert conn.execute("SELECT count(*) FROM raw.ingested_files WHERE first_seen_at IS NULL").fetchall() == [(0,)]


def test_the_live_warehouse_records_each_arrival(demo_run):
    estate, warehouse, _, result = demo_run
    assert result.success
    conn = duckdb.connect(str(warehouse), read_only=True)
    try:
        assert conn.execute("SELECT landed_at FROM raw.ingested_files WHERE source_file = ?",
                            [LATE_FILE]).fetchall() == [(LATE_LANDED,)]
        for register in ("authorization_events", "patch_tests", "exceptions"):
            assert conn.execute(f"SELECT DISTINCT arrived_at FROM ledger.{register}").fetchall() == [
                (REGISTERS_LANDED,)]
        # As of its own date (2026-11-27) nothing had arrived late.
        assert conn.execute("SELECT count(*) FROM marts.late_arrivals").fetchall() == [(0,)]
    finally:
        conn.close()
    lines = (estate.parent / "ledger" / "patch_tests.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["arrived_at"] == "2026-11-27T22:00:00+00:00"


def _events_by(estate, register, column, end):
    """Row ids of a register whose event time is before `end`, read from the CSV by hand."""
    ids = []
    with (estate / "registers" / f"{register}.csv").open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            text = re.sub(r"(\.\d{6})\d+", r"\1", row[column].strip()).replace("Z", "+00:00")
            if not text:
                continue
            when = datetime.fromisoformat(text)
            if (when if when.tzinfo else when.replace(tzinfo=UTC)) < end:
                ids.append(row[next(iter(row))])
    return ids


@pytest.fixture(scope="module")
def packs(demo_run, tmp_path_factory):
    estate, warehouse, _, _ = demo_run
    root = tmp_path_factory.mktemp("arrivals")
    for known_then in (False, True):
        rebuild_pack(PAST, estate=estate, warehouse=warehouse, ledger_dir=root / "no-ledger",
                     out_root=root, known_then=known_then)
    return estate, root / "2026-11-05", root / "2026-11-05-as-known-then"


def test_the_pack_as_corrected_since_lists_what_arrived_after_the_date(packs):
    estate, corrected, _ = packs
    late = rows(corrected / "populations" / "late_arrivals.csv")
    files = [r for r in late if r["kind"] == "scan_file"]
    assert [(f["subject"], f["source"], f["covers_from"], f["covers_to"], f["arrived_at"], f["days_late"])
            for f in files] == [(LATE_FILE, "raw.patch_assessment_resources", "2026-11-02", "2026-11-02",
                                 "2026-11-07T22:00:00+00:00", "2")]
    # Every register row for an event on or before the date was first recorded on 2026-11-27.
    expected = sorted(
        [f"authorization_events/{i}" for i in _events_by(estate, "authorization_events", "occurred_at", CUTOFF)]
        + [f"patch_tests/{i}" for i in _events_by(estate, "patch_tests", "started_at", CUTOFF)]
        + [f"exceptions/{i}" for i in _events_by(estate, "exceptions", "approved_at", CUTOFF)])
    registered = [r for r in late if r["kind"] == "register_row"]
    assert sorted(r["subject"] for r in registered) == expected and expected
    assert {r["arrived_at"] for r in registered} == {"2026-11-27T22:00:00+00:00"}
    findings = rows(corrected / "populations" / "audit_findings.csv")
    scan = [f for f in findings if f["rule"] == "late_scan_file"]
    assert [f["subject"] for f in scan] == [f"file/{LATE_FILE}"]
    assert "holds rows of 2026-11-02 to 2026-11-02 and landed on 2026-11-07 22:00 UTC, 2 day(s) after 2026-11-05" in scan[0]["condition"]
    per_register = {f["subject"]: int(f["affected"]) for f in findings if f["rule"] == "register_row_recorded_late"}
    assert per_register == {f"register/{name}": sum(1 for e in expected if e.startswith(name + "/"))
                            for name in ("authorization_events", "exceptions", "patch_tests")
                            if any(e.startswith(name + "/") for e in expected)}
    manifest = json.loads((corrected / "manifest.json").read_text())
    assert manifest["basis"] == "as_corrected_since" and "known_by" not in manifest
    assert verify_manifest(corrected) == []


def _rows_in(estate, names):
    return sum(len(json.loads((estate / n).read_text())["data"]) for n in names)


def test_the_pack_as_known_then_holds_only_what_had_arrived(packs):
    estate, corrected, known = packs
    manifest = json.loads((known / "manifest.json").read_text())
    assert (manifest["as_of"], manifest["basis"], manifest["known_by"]) == (
        "2026-11-05", "as_known_then", "2026-11-06T00:00:00+00:00")
    assert verify_manifest(known) == []
    # Nothing had arrived late yet, and the registers had not arrived at all.
    assert rows(known / "populations" / "late_arrivals.csv") == []
    assert rows(known / "populations" / "authorization_events.csv") == []
    assert rows(known / "populations" / "exceptions.csv") == []
    # The assessment exports it read: those that landed by the end of 2026-11-05 (named for a day
    # up to it), without the one that landed on 2026-11-07.
    folder = estate / "azure" / "resource_graph"
    arrived = [f"azure/resource_graph/{p.name}" for p in sorted(folder.glob("patchassessmentresources-*.json"))
               if p.name[-15:-5] <= "2026-11-05" and p.name[-15:-5] != "2026-11-02"]
    assert manifest["table_rows"]["raw.patch_assessment_resources"] == _rows_in(estate, arrived)
    # The pack as corrected since counts the late file too, and no file named for a later day.
    corrected_rows = json.loads((corrected / "manifest.json").read_text())["table_rows"]
    assert corrected_rows["raw.patch_assessment_resources"] == _rows_in(estate, [*arrived, LATE_FILE])
    # Its folder name goes with its manifest: relabelled as the corrected pack, verify fails.
    manifest.pop("known_by")
    (known / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    try:
        assert any("does not match the folder 2026-11-05-as-known-then" in p for p in verify_manifest(known))
    finally:
        manifest["known_by"] = "2026-11-06T00:00:00+00:00"
        (known / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
