"""The whole graph on a small generated estate: the planted hard cases land where they should."""

from __future__ import annotations

import json

import duckdb
import pytest


@pytest.fixture(scope="module")
def warehouse(demo_run):
    estate, path, reports, result = demo_run
    failures = [e.step_key for e in result.all_events if e.is_step_failure]
    assert result.success, f"steps failed: {failures}"
    conn = duckdb.connect(str(path), read_only=True)
    yield conn
    conn.close()


@pytest.fixture(scope="module")
def truth(demo_run):
    estate = demo_run[0]
    return json.loads((estate / "demo_truth.json").read_text())["cases"]


MARTS = ["patch_catalog", "patch_cves", "patch_supersedence", "vm_inventory", "vm_patch_state",
         "vm_patch_history", "compliance_gaps"]


@pytest.mark.parametrize("table", MARTS)
def test_every_mart_is_filled(warehouse, table):
    assert warehouse.execute(f"SELECT count(*) FROM marts.{table}").fetchone()[0] > 0


def test_planted_states(warehouse, truth):
    checked = 0
    for case in truth:
        if not case.get("expected_state") or not case.get("patch_key"):
            continue
        row = warehouse.execute(
            "SELECT state FROM marts.vm_patch_state WHERE vm_id = ? AND patch_key = ?",
            [case["vm_id"], case["patch_key"]],
        ).fetchone()
        assert row is not None, f"{case['case']}: no state for {case['vm_id']} {case['patch_key']}"
        assert row[0] == case["expected_state"], case
        checked += 1
    assert checked >= 5


def test_planted_gaps(warehouse, truth):
    checked = 0
    for case in truth:
        gap_type = case.get("expected_gap_type")
        if not gap_type:
            continue
        found = warehouse.execute(
            "SELECT count(*) FROM marts.compliance_gaps WHERE vm_id = ? AND gap_type = ? "
            "AND (patch_key = ? OR ? IS NULL)",
            [case["vm_id"], gap_type, case.get("patch_key"), case.get("patch_key")],
        ).fetchone()[0]
        assert found == 1, case
        checked += 1
    assert checked >= 5


def test_report_written(demo_run):
    reports = demo_run[2]
    html = sorted(reports.glob("*/compliance-report.html"))
    assert len(html) == 1
    text = html[0].read_text()
    assert "Executive summary" in text and "Gaps by type" in text
    assert (html[0].parent / "compliance-report.pdf").read_bytes().startswith(b"%PDF")


def test_every_table_asset_reports_rows_and_columns(demo_run):
    result = demo_run[3]
    missing = []
    for event in result.get_asset_materialization_events():
        materialization = event.step_materialization_data.materialization
        if materialization.asset_key.path[0] not in ("raw", "staging", "marts", "ledger"):
            continue
        keys = set(materialization.metadata)
        if not {"dagster/row_count", "dagster/column_schema"} <= keys:
            missing.append(materialization.asset_key.to_user_string())
    assert missing == []


def test_schema_page_is_current(warehouse):
    """docs/warehouse.md is generated from the comments; regenerate it with `patchledger schema-doc`."""
    from pathlib import Path

    from pipelines.schema_doc import schema_markdown

    committed = (Path(__file__).resolve().parents[1] / "docs" / "warehouse.md").read_text()
    assert schema_markdown(warehouse) == committed


def test_every_mart_and_column_is_commented(warehouse):
    uncommented = warehouse.execute(
        "SELECT schema_name || '.' || table_name || '.' || column_name FROM duckdb_columns() "
        "WHERE schema_name IN ('marts', 'ledger') AND (comment IS NULL OR comment = '') ORDER BY 1"
    ).fetchall()
    tables = warehouse.execute(
        "SELECT schema_name || '.' || table_name FROM duckdb_tables() "
        "WHERE schema_name IN ('marts', 'ledger') AND (comment IS NULL OR comment = '') ORDER BY 1"
    ).fetchall()
    assert uncommented == [] and tables == []


def test_every_raw_column_is_commented(warehouse):
    """Raw columns say what the field is as received (pipelines/config/raw_columns.yaml)."""
    columns = warehouse.execute(
        "SELECT count(*), count(*) FILTER (WHERE comment IS NULL OR comment = '') FROM duckdb_columns() "
        "WHERE schema_name = 'raw'").fetchone()
    assert columns[0] > 300 and columns[1] == 0
    kev_due = warehouse.execute(
        "SELECT comment FROM duckdb_columns() WHERE schema_name = 'raw' AND table_name = 'kev_vulnerabilities' "
        "AND column_name = 'due_date'").fetchone()[0]
    assert "dueDate" in kev_due
    tables = warehouse.execute(
        "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'raw' AND (comment IS NULL OR comment = '')"
    ).fetchall()
    assert tables == []


def test_state_on_past_dates_matches_the_generators_truth(warehouse, demo_run):
    """Point in time: the state of planted machines on two past dates, rebuilt from history."""
    from collections import Counter, defaultdict
    from datetime import date

    from assets.monitoring import vm_patch_state_at

    estate = demo_run[0]
    truth = json.loads((estate / "demo_truth.json").read_text())["truth"]
    by_date = defaultdict(list)
    for row in truth:
        by_date[row["date"]].append(row)
    assert len(by_date) >= 2
    outcomes = Counter()
    for day, rows in sorted(by_date.items()):
        states = vm_patch_state_at(warehouse, date.fromisoformat(day))
        found = {(r.vm_id, r.patch_key): r.last_known_state for r in states.itertuples()}
        for row in rows:
            state = found.get((row["vm_id"], row["patch_key"]))
            outcomes[(row["state"], state)] += 1
            # An assessment lists only what is missing: a patch installed before the history
            # began has no observation (None), which reads as not missing.
            allowed = {"installed": {None, "installed", "installed_pending_reboot"},
                       "missing": {None, "missing", "failed", "not_selected"}}[row["state"]]
            assert state in allowed, (day, row, state)
    assert outcomes[("installed", "installed")] >= 20
    assert outcomes[("missing", "missing")] >= 20


def test_report_figures_match_the_marts(warehouse, demo_run):
    import re

    html = next(demo_run[2].glob("*/compliance-report.html")).read_text()

    def kpi(label: str) -> int:
        return int(re.search(re.escape(label) + r'<b[^>]*>(\d+)</b>', html).group(1))

    count = lambda sql: warehouse.execute(sql).fetchall()[0][0]  # noqa: E731
    assert kpi("Machines in scope") == count("SELECT count(*) FROM marts.vm_inventory")
    assert kpi("Open gaps") == count("SELECT count(*) FROM marts.compliance_gaps")
    assert kpi("Overdue") == count("SELECT count(*) FROM marts.compliance_gaps WHERE days_overdue > 0")
    assert kpi("Stale assessment") == count(
        "SELECT count(*) FROM marts.vm_inventory WHERE coverage_status = 'unknown_stale'")
    for gap_type, gaps in warehouse.execute(
            "SELECT gap_type, count(*) FROM marts.compliance_gaps GROUP BY ALL").fetchall():
        row = re.search(r"\(" + gap_type + r'\)</span></td><td class="num">(\d+)</td>', html)
        assert row and int(row.group(1)) == gaps, gap_type


def test_pdf_has_pages_that_render_to_images(demo_run, tmp_path):
    import pypdfium2

    pdf = pypdfium2.PdfDocument(next(demo_run[2].glob("*/compliance-report.pdf")))
    assert len(pdf) >= 5
    for index in range(len(pdf)):
        image = pdf[index].render(scale=30 / 72).to_pil()
        # Each page has ink on it (not a blank render).
        assert image.convert("L").getextrema()[0] < 200


def test_os_versions_of_the_snapshots_become_intervals(warehouse, demo_run):
    """Each machine's inventory os_version intervals start at the first snapshot file whose
    instance view shows a new osVersion; every machine of the estate has an OS version."""
    from datetime import UTC, datetime

    expected: dict[str, list[tuple[datetime, str]]] = {}
    for path in sorted((demo_run[0] / "azure/virtual_machines").glob("virtual_machines-*.json")):
        captured = datetime.strptime(path.stem.split("-")[1], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        for vm in json.loads(path.read_text()):
            seen = expected.setdefault(vm["id"].lower(), [])
            if not seen or seen[-1][1] != vm["instanceView"]["osVersion"]:
                seen.append((captured, vm["instanceView"]["osVersion"]))
    rows = warehouse.execute(
        "SELECT vm_id, valid_from, value FROM marts.vm_config_history "
        "WHERE attribute = 'os_version' AND source = 'inventory' ORDER BY vm_id, valid_from").fetchall()
    got: dict[str, list[tuple[datetime, str]]] = {}
    for vm_id, valid_from, value in rows:
        got.setdefault(vm_id, []).append((valid_from, value))
    assert got == expected
    assert sum(len(v) > 1 for v in expected.values()) >= 5  # monthly cumulative updates change the build
    assert warehouse.execute("SELECT count(*) FILTER (WHERE os_version IS NULL), count(*) "
                             "FROM marts.vm_inventory").fetchone() == (0, 60 + 3)
