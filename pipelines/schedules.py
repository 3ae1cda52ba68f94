"""Schedules: the daily refresh and the Patch Tuesday bulletin ingest."""

from __future__ import annotations

import dagster as dg

from pipelines import jobs

# Daily at 06:00 UTC, after the overnight periodic assessments (24 h cadence in Azure Update Manager).
daily_refresh = dg.ScheduleDefinition(
    name="daily_refresh",
    job=jobs.daily_refresh,
    cron_schedule="0 6 * * *",
    execution_timezone="UTC",
    description="Bring the warehouse up to date with the day's new data (the pack is monthly).",
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
    return dg.RunRequest(run_key=f"patch-tuesday-{tick:%Y-%m}")


# The pack for the month just ended on the 1st at 07:00 UTC, after the daily refresh at 06:00:
# the tick of 1 December runs the November partition, the pack as of 30 November.
monthly_evidence_pack = dg.build_schedule_from_partitioned_job(
    jobs.month_end_evidence_pack,
    name="monthly_evidence_pack",
    hour_of_day=7,
    minute_of_hour=0,
    description="Write the evidence pack for the last day of the month just ended.",
)


# The weekly audit on Monday at 07:00 UTC, after the daily refresh: a dated run of its own.
weekly_patch_audit = dg.ScheduleDefinition(
    name="weekly_patch_audit",
    job=jobs.scheduled_audit,
    cron_schedule="0 7 * * 1",
    execution_timezone="UTC",
    description="Audit installed versus authorized patches every Monday.",
)


def all_schedules() -> list:
    return [daily_refresh, patch_tuesday_bulletins, monthly_evidence_pack, weekly_patch_audit]
