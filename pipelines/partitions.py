"""Time as a dimension in Dagster: the daily partitions of everything that grows with time.

One `DailyPartitionsDefinition` (UTC) carries the raw scan assets (Resource Graph, patch
operations, Log Analytics) and the time chain (`staging.assessment_runs`,
`staging.patch_observations`, `marts.vm_patch_history`, `marts.remediation_episodes`,
`marts.compliance_daily`) and their checks. A partition is a UTC day:

- of a raw scan asset, the scan files dated that day (the date in the file's name, as the lake's
  `day=` folder). The first partition also takes the files dated before it and the newest
  partition those dated after it (today's captures), so that nothing on disk waits; files whose
  name has no date (an export spanning many days) are read by every run, and skipped by the
  manifest when unchanged.
- of the time chain, that day's rows. A run of the days X..Y recomputes from X (or from the
  first day its new or changed files touch, if earlier) up to the evaluation date, since every
  later day continues from the state of the days before (pipelines/increments.py); a run of every
  partition rebuilds in full.

Every run of a partitioned asset names its days (the tags of a partition range, or one partition
key); `every_day()` gives the tags of all of them. The partitions start on
PATCHLEDGER_PARTITIONS_FROM (default 2026-01-01) and end with the last complete UTC day
(`end_offset=0`): the daily schedule runs the day that just ended.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from datetime import date

import dagster as dg

PARTITIONS_FROM_ENV = "PATCHLEDGER_PARTITIONS_FROM"
DEFAULT_PARTITIONS_FROM = "2026-01-01"

RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"

# The day a scan file covers: the date in its name (lake.py writes the same into `day=`).
FILE_DAY = re.compile(r"(\d{4}-\d{2}-\d{2})")


def partitions_from() -> date:
    value = os.environ.get(PARTITIONS_FROM_ENV) or DEFAULT_PARTITIONS_FROM
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{PARTITIONS_FROM_ENV} must be a date YYYY-MM-DD, not {value!r}") from None


DAILY = dg.DailyPartitionsDefinition(start_date=partitions_from().isoformat(), timezone="UTC", end_offset=0)

# A backfill of many days is one run: the time chain recomputes a range in one pass.
SINGLE_RUN = dg.BackfillPolicy.single_run()


def first_day() -> date:
    return date.fromisoformat(DAILY.get_first_partition_key())


def last_day() -> date:
    """The newest partition (the last complete UTC day by the clock)."""
    key = DAILY.get_last_partition_key()
    if key is None:
        raise ValueError(f"no daily partition yet: {PARTITIONS_FROM_ENV} ({first_day()}) is after yesterday")
    return date.fromisoformat(key)


def range_tags(first: date, last: date) -> dict[str, str]:
    """The run tags of the partitions `first`..`last`, clamped to the partitions that exist."""
    low, high = first_day(), last_day()
    first, last = min(max(first, low), high), min(max(last, low), high)
    return {RANGE_START: first.isoformat(), RANGE_END: max(first, last).isoformat()}


def every_day() -> dict[str, str]:
    """The run tags of every partition: a full run."""
    return range_tags(first_day(), last_day())


def run_days(context) -> tuple[date, date] | None:
    """The first and last day of the run's partitions (None: the run has none)."""
    if context.has_partition_key:  # one partition (a schedule's run, a one-day backfill)
        day = date.fromisoformat(context.partition_key)
        return day, day
    if not context.has_partition_key_range:
        return None
    keys = context.partition_key_range
    return date.fromisoformat(keys.start), date.fromisoformat(keys.end)


def requested(context) -> tuple[date | None, bool]:
    """What the run's partitions ask of a time-chain table: the first day to recompute at the
    latest, and whether every partition is asked for (a full rebuild)."""
    days = run_days(context)
    if days is None:
        return None, False
    return days[0], days[0] <= first_day() and days[1] >= last_day()


def day_window(context) -> tuple[date, date] | None:
    """The days the run's partitions stand for (open ends as date.min / date.max: the first
    partition takes the older days, the newest the later ones); None: every day."""
    days = run_days(context)
    if days is None:
        return None
    first, last = days
    return (date.min if first <= first_day() else first), (date.max if last >= last_day() else last)


def file_day(name: str) -> date | None:
    """The day in a scan file's name, or None (undated: read by every run)."""
    found = FILE_DAY.search(name)
    if not found:
        return None
    try:
        return date.fromisoformat(found.group(1))
    except ValueError:
        return None


def in_window(name: str, window: tuple[date, date] | None) -> bool:
    day = file_day(name)
    return window is None or day is None or window[0] <= day <= window[1]


def check_results(context: dg.AssetCheckExecutionContext, result: dg.AssetCheckResult) -> Iterator:
    """A check of a day-partitioned asset, recorded on each day of the run. Dagster 1.13 stores
    the AssetCheckResult of a run of a partition range without a partition, and leaves each
    day's planned evaluation open; so a range run yields the result once per day (with that
    day's materialization as its target), then the check's output. A run of one day, or of no
    partition, yields the result as it is."""
    if context.has_partition_key or not context.has_partition_key_range:
        yield result
        return
    from dagster._core.definitions.asset_checks.asset_check_evaluation import (
        AssetCheckEvaluationTargetMaterializationData as Target,
    )

    (spec,) = context.check_specs
    for day in context.partition_keys:
        found = context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=spec.asset_key, asset_partitions=[day]), limit=1).records
        target = Target(run_id=found[0].run_id, storage_id=found[0].storage_id,
                        timestamp=found[0].timestamp) if found else None
        yield dg.AssetCheckEvaluation(
            asset_key=spec.asset_key, check_name=spec.name, passed=result.passed, metadata=result.metadata,
            severity=result.severity, description=result.description, blocking=spec.blocking,
            partition=day, target_materialization_data=target)
    yield dg.Output(None, output_name=context.op_def.output_defs[0].name)
