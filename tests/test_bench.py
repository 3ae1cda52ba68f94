"""The benchmark's reuse of an estate already generated (a 10,000-VM estate takes minutes)."""

from __future__ import annotations

import json
from datetime import date

from pipelines.bench import _reusable_estate


def _estate(root, vms=3, days=14):
    (root / "estate" / "azure").mkdir(parents=True)
    (root / "estate" / "demo_truth.json").write_text(
        json.dumps({"generator": {"vms": vms, "days": days, "seed": 7, "start": "2026-11-14", "end": "2026-11-27"}}))
    # What an interrupted run leaves: the last day's file set aside, a warehouse, ledger files.
    (root / "last-day" / "azure").mkdir(parents=True)
    (root / "last-day" / "azure" / "virtual_machines-2026-11-27.json").write_text("[]")
    (root / "warehouse.duckdb").write_text("x")
    (root / "warehouse.duckdb.wal").write_text("x")
    (root / "ledger").mkdir()
    (root / "ledger" / "approvals.jsonl").write_text("{}\n")


def test_same_size_is_reused_whole_and_clean(tmp_path):
    _estate(tmp_path)
    assert _reusable_estate(tmp_path, 3, 14) == date(2026, 11, 27)
    assert (tmp_path / "estate" / "azure" / "virtual_machines-2026-11-27.json").read_text() == "[]"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["estate"]


def test_other_size_or_no_estate_is_not_reused(tmp_path):
    _estate(tmp_path / "a", vms=3, days=14)
    assert _reusable_estate(tmp_path / "a", 3, 90) is None
    assert _reusable_estate(tmp_path / "a", 30, 14) is None
    assert (tmp_path / "a" / "warehouse.duckdb").exists()  # left as it was
    assert _reusable_estate(tmp_path / "b", 3, 14) is None
