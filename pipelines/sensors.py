"""Sensors. None of them opens the warehouse: a sensor runs inside the long-lived daemon, and a
DuckDB connection held there would block every scheduled run."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import dagster as dg

from pipelines import jobs, settings


def estate_fingerprint(estate: Path) -> str:
    """A digest of every file's path, size and modification time under the estate folder."""
    digest = hashlib.sha256()
    if estate.is_dir():
        for root, dirs, files in os.walk(estate):
            dirs.sort()
            for name in sorted(files):
                path = Path(root, name)
                stat = path.stat()
                digest.update(f"{path.relative_to(estate)}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


@dg.sensor(
    name="estate_changed",
    job=jobs.full_refresh,
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description=(
        "Launches full_refresh when files in the estate folder are added, removed or changed "
        "(for example a nightly export job dropping new Resource Graph or Log Analytics files)."
    ),
)
def estate_changed(context: dg.SensorEvaluationContext):
    fingerprint = estate_fingerprint(settings.estate_dir())
    if fingerprint == context.cursor:
        return dg.SkipReason("no change in the estate folder")
    context.update_cursor(fingerprint)
    return dg.RunRequest(run_key=f"estate-{fingerprint[:16]}")


def all_sensors() -> list:
    return [estate_changed]
