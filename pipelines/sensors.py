"""Sensors. None of them opens the warehouse: a sensor runs inside the long-lived daemon, and a
DuckDB connection held there would block every scheduled run."""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, date, datetime
from pathlib import Path

import dagster as dg
import httpx

from pipelines import jobs, partitions
from pipelines.resources import RunSettings
from pipelines.sources.bulletins import utc_timestamp
from pipelines.sources.msrc.index import scoped_index
from pipelines.sources.msrc.resource import MsrcResource


def estate_fingerprint(estate: Path) -> tuple[str, dict[str, int]]:
    """A digest of every file's path, size and modification time under the estate folder, and
    each file's modification time (ns) by path."""
    digest = hashlib.sha256()
    mtimes = {}
    if estate.is_dir():
        for root, dirs, files in os.walk(estate):
            dirs.sort()
            for name in sorted(files):
                path = Path(root, name)
                stat = path.stat()
                relative = path.relative_to(estate).as_posix()
                digest.update(f"{path.relative_to(estate)}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
                mtimes[relative] = stat.st_mtime_ns
    return digest.hexdigest(), mtimes


def touched_range(mtimes: dict[str, int], since_ns: int | None, as_of: date | None = None) -> dict[str, str] | None:
    """The partitions a change touches: from the earliest day in the name of a file written
    after `since_ns` (every day when unknown) to the newest partition, or to the as-of date when
    one is set (nothing dated after it enters a run for it). None when the change touches only
    days after the as-of date."""
    last = min(partitions.last_day(), as_of) if as_of else partitions.last_day()
    if since_ns is None:
        return partitions.range_tags(partitions.first_day(), last)
    days = [d for name, ns in mtimes.items() if ns > since_ns and (d := partitions.file_day(name))]
    if as_of and days and min(days) > as_of:
        return None
    return partitions.range_tags(min(days, default=last), last)


@dg.sensor(
    name="estate_changed",
    job=jobs.daily_refresh,
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description=(
        "Launches daily_refresh when files in the estate folder are added, removed or changed "
        "(for example a nightly export job dropping new Resource Graph or Log Analytics files), "
        "for the partitions from the earliest day a new or rewritten file is dated to the newest "
        "(to the as-of date when PATCHLEDGER_AS_OF is set)."
    ),
)
def estate_changed(context: dg.SensorEvaluationContext, run_settings: RunSettings):
    fingerprint, mtimes = estate_fingerprint(Path(run_settings.estate_dir))
    previous = json.loads(context.cursor) if context.cursor and context.cursor.startswith("{") else {}
    if fingerprint == previous.get("fingerprint"):
        return dg.SkipReason("no change in the estate folder")
    context.update_cursor(json.dumps({"fingerprint": fingerprint, "mtime_ns": max(mtimes.values(), default=0)}))
    as_of = run_settings.as_of_date()
    tags = touched_range(mtimes, previous.get("mtime_ns"), as_of)
    if tags is None:
        return dg.SkipReason(f"the new or changed files are dated after the as-of date {as_of}")
    return dg.RunRequest(run_key=f"estate-{fingerprint[:16]}", tags=tags)


@dg.sensor(
    name="msrc_revisions",
    job=jobs.bulletin_refresh,
    minimum_interval_seconds=24 * 3600,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description=(
        "Daily, in live mode (PATCHLEDGER_SOURCE=azure): reads the MSRC /updates index and "
        "launches bulletin_refresh when a month document in the ingest scope (last "
        "PATCHLEDGER_MSRC_MONTHS months, Mariner only with PATCHLEDGER_MSRC_MARINER=1) has a "
        "CurrentReleaseDate newer than the cursor. MSRC revises months long after release. The "
        "cursor is the newest CurrentReleaseDate seen; the warehouse is never opened."
    ),
)
def msrc_revisions(context: dg.SensorEvaluationContext, run_settings: RunSettings, msrc_api: MsrcResource):
    if run_settings.source != "azure":
        return dg.SkipReason("offline mode (PATCHLEDGER_SOURCE is not 'azure'): MSRC is not polled")
    try:
        # Short timeout and few retries: a tick must stay quick.
        with msrc_api.client(timeout=30.0, retries=2, backoff_seconds=2.0) as client:
            index = client.index()
    except httpx.HTTPError as exc:
        return dg.SkipReason(f"MSRC /updates unavailable ({type(exc).__name__}); retried next tick")
    cursor = utc_timestamp(context.cursor) if context.cursor else None
    revised = []
    since = msrc_api.since(datetime.now(UTC).date())
    for entry in scoped_index(index, since=since, include_mariner=msrc_api.include_mariner()):
        current = utc_timestamp(entry.get("CurrentReleaseDate"))
        if entry.get("ID") and current is not None and (cursor is None or current > cursor):
            revised.append((current, str(entry["ID"])))
    if not revised:
        return dg.SkipReason(f"no MSRC document revised since {context.cursor or 'ever'}")
    newest = max(current for current, _ in revised)
    ids = sorted(document_id for _, document_id in revised)
    context.update_cursor(newest.isoformat())
    return dg.RunRequest(
        run_key=f"msrc-revision-{newest:%Y%m%dT%H%M%SZ}",
        tags={"patchledger/msrc_revised": ",".join(ids)[:200]},
        partition_key=partitions.last_day().isoformat(),  # the time chain re-reads the catalog
    )


def all_sensors() -> list:
    return [estate_changed, msrc_revisions]
