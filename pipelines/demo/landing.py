"""When each demo file landed in the estate (its modification time), which is what PatchLedger
records as its arrival (raw.ingested_files.landed_at, ledger arrived_at).

A scan export named for a day lands at 22:00 UTC that day; the undated ones and the registers
hold rows to the last day and land then. One Resource Graph assessment export lands five days
late, so that packs for the days between show it as a late arrival.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

from .period import Period

LANDED_FOLDERS = ("azure/resource_graph", "azure/patch_operations", "log_analytics", "registers")
_DAY = re.compile(r"(\d{4}-\d{2}-\d{2})")
LANDING_HOUR = time(22, 0)
LATE_DAYS_BEFORE_END, LATE_BY_DAYS = 25, 5


def _landing(day: date) -> float:
    return datetime.combine(day, LANDING_HOUR, tzinfo=UTC).timestamp()


def set_landing_times(out: Path, period: Period) -> dict:
    """Set the scan exports' and registers' modification times; returns the planted late case."""
    for folder in LANDED_FOLDERS:
        for path in sorted((out / folder).rglob("*")):
            if path.is_file():
                found = _DAY.search(path.name)
                day = date.fromisoformat(found.group(1)) if found else period.end
                os.utime(path, (_landing(day), _landing(day)))
    covered = period.end - timedelta(days=LATE_DAYS_BEFORE_END)
    late = out / "azure" / "resource_graph" / f"patchassessmentresources-{covered.isoformat()}.json"
    arrived = covered + timedelta(days=LATE_BY_DAYS)
    if late.exists():
        os.utime(late, (_landing(arrived), _landing(arrived)))
    return {
        "case": "late_scan_file", "vm_id": None, "patch_key": None, "expected_state": None,
        "file": late.relative_to(out).as_posix(),
        "covers": covered.isoformat(),
        "arrived_at": datetime.combine(arrived, LANDING_HOUR, tzinfo=UTC).isoformat(),
        "where": "marts.late_arrivals (kind scan_file) and the audit finding late_scan_file of the "
                 "packs for the days it covers until it arrived",
    }
