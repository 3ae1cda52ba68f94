"""Schedules: the daily refresh and the Patch Tuesday bulletin ingest."""

from __future__ import annotations

from datetime import timedelta

import dagster as dg

from pipelines import jobs

# Daily at 06:00 UTC, after the overnight periodic assessments (24 h cadence in Azure Update
# Manager): the tick of 2 December runs the partition of 1 December, the day just ended.
daily_refresh = dg.build_schedule_from_partitioned_job(
    jobs.daily_refresh,
    name="daily_refresh",
    hour_of_day=6,
    minute_of_hour=0,
    description="Bring the warehouse up to date with the day just ended (its partition; the pack is monthly).",
)


def is_patch_tuesday(day) -> bool:
    """The second Tuesday of a month: the only Tuesday that falls on the 8th to the 14th."""
    return day.weekday() == 1 and 8 <= day.day <= 14


# MSRC publishes around 17:00-18:00 UTC on Patch Tuesday; 20:00 UTC leaves a margin. Cron cannot
# say "second Tuesday" (a day-of-month and a weekday together mean either, not both), so the
# schedule ticks every Tuesday and skips the others.
@dg.schedule(
    name="patch_tuesday_bulletins",
    job=jobs.bulletin_refresh,
    cron_schedule="0 20 * * 2",
    execution_timezone="UTC",
    description="Ingest the new MSRC month on Patch Tuesday evening (second Tuesday, 20:00 UTC).",
)
def patch_tuesday_bulletins(context: dg.ScheduleEvaluationContext):
    tick = context.scheduled_execution_time
    if not is_patch_tuesday(tick):
        return dg.SkipReason(f"{tick:%Y-%m-%d} is not the second Tuesday of the month")
    # The job holds the time chain (the episodes read the catalog): the day just ended.
    return dg.RunRequest(run_key=f"patch-tuesday-{tick:%Y-%m}", partition_key=previous_day(tick))


def previous_day(tick) -> str:
    """The partition of the day before a tick (the newest complete day then)."""
    return (tick.date() - timedelta(days=1)).isoformat()


# The pack for the month just ended on the 1st at 07:00 UTC, after the daily refresh at 06:00:
# the tick of 1 December runs the November partition, the pack as of 30 November.
monthly_evidence_pack = dg.build_schedule_from_partitioned_job(
    jobs.month_end_evidence_pack,
    name="monthly_evidence_pack",
    hour_of_day=7,
    minute_of_hour=0,
    description="Write the evidence pack for the last day of the month just ended.",
)


# The weekly audit on Monday at 07:00 UTC, after the daily refresh: a dated run of its own, of
# the partition of the day just ended (its job holds the time chain).
@dg.schedule(
    name="weekly_patch_audit",
    job=jobs.scheduled_audit,
    cron_schedule="0 7 * * 1",
    execution_timezone="UTC",
    description="Audit installed versus authorized patches every Monday.",
)
def weekly_patch_audit(context: dg.ScheduleEvaluationContext):
    tick = context.scheduled_execution_time
    return dg.RunRequest(run_key=f"weekly-audit-{tick:%Y-%m-%d}", partition_key=previous_day(tick))


def all_schedules() -> list:
    return [daily_refresh, patch_tuesday_bulletins, monthly_evidence_pack, weekly_patch_audit]
