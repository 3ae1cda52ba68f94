"""Schedules of InGuestPatch maintenance configurations as maintenance windows.

A configuration's `maintenanceWindow` states its schedule in Azure's own terms: `startDateTime`
and `expirationDateTime` ("YYYY-MM-DD hh:mm", local time of `timeZone`), `duration` ("hh:mm"),
`timeZone` (a Windows time-zone name such as "GMT Standard Time") and `recurEvery`, whose grammar
(Microsoft.Maintenance REST API, MaintenanceWindow.recurEvery) is

    [n]Hour(s) | [n]Day(s) | [n]Week(s) [Monday-Sunday, comma separated]
    [n]Month(s) [day1-day31, comma separated]
    [n]Month(s) First|Second|Third|Fourth|Last <weekday> [Offset<-6..6>]

with n = 1 when omitted ("Week Saturday,Sunday", "2Months", "Month day23,day24", "1Month Second
Tuesday Offset2" = two days after Patch Tuesday). Each becomes an RFC 5545 RRULE plus a day
offset (RRULE has no offset), and the time zone its IANA name through the CLDR windowsZones
mapping that tzlocal ships. What this cannot read is rejected naming the configuration, the
field and the value, never guessed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

import pandas as pd
from tzlocal.windows_tz import win_tz

_FREQ = {"hour": "HOURLY", "day": "DAILY", "week": "WEEKLY", "month": "MONTHLY"}
_WEEKDAY = {"monday": "MO", "tuesday": "TU", "wednesday": "WE", "thursday": "TH", "friday": "FR",
            "saturday": "SA", "sunday": "SU"}
_WEEK_OF_MONTH = {"first": "+1", "second": "+2", "third": "+3", "fourth": "+4", "last": "-1"}
_RECUR = re.compile(r"(\d*)\s*(hour|day|week|month)s?(?:\s+(.+))?", re.IGNORECASE)
_MONTH_DAYS = re.compile(r"day\d{1,2}(?:\s*,\s*day\d{1,2})*", re.IGNORECASE)
_NTH_WEEKDAY = re.compile(r"(first|second|third|fourth|last)\s+([a-z]+day)(?:\s+offset\s*([+-]?\d+))?",
                          re.IGNORECASE)
_DURATION = re.compile(r"(\d{1,2}):([0-5]\d)")
# "YYYY-MM-DD hh:mm" as documented; Azure states an open expiration as 9999-12-31 23:59:59.
_LOCAL_TIMES = ("%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S")
# Columns of the parsed schedules (staging.maintenance_recurrences).
RECURRENCE_COLUMNS = ["configuration_id", "source_file", "rrule", "offset_days", "time_zone",
                      "starts_at", "expires_at", "duration_minutes"]


@dataclass(frozen=True)
class Recurrence:
    rrule: str  # RFC 5545, without DTSTART (the configuration's startDateTime)
    offset_days: int  # days added to every occurrence of the rule


def parse_recur_every(text: str | None) -> Recurrence:
    """`recurEvery` as an RRULE and a day offset; ValueError saying what is wrong."""
    match = _RECUR.fullmatch((text or "").strip())
    if not match:
        raise ValueError("expected [n]Hour(s), [n]Day(s), [n]Week(s) or [n]Month(s) and their days")
    interval = int(match[1] or 1)
    if interval < 1:
        raise ValueError("the frequency must be at least 1")
    freq, rest = _FREQ[match[2].lower()], (match[3] or "").strip()
    rule = f"FREQ={freq};INTERVAL={interval}"
    if not rest:
        return Recurrence(rule, 0)
    if freq == "WEEKLY":
        days = [d.strip().lower() for d in rest.split(",")]
        unknown = [d for d in days if d not in _WEEKDAY]
        if unknown:
            raise ValueError(f"unknown weekday {unknown[0]!r}")
        return Recurrence(f"{rule};BYDAY={','.join(_WEEKDAY[d] for d in days)}", 0)
    if freq == "MONTHLY" and _MONTH_DAYS.fullmatch(rest):
        days = [int(d) for d in re.findall(r"\d+", rest)]
        if not all(1 <= d <= 31 for d in days):
            raise ValueError("a month day is between day1 and day31")
        return Recurrence(f"{rule};BYMONTHDAY={','.join(map(str, days))}", 0)
    nth = _NTH_WEEKDAY.fullmatch(rest) if freq == "MONTHLY" else None
    if nth is None:
        raise ValueError(f"cannot read {rest!r} after the frequency")
    weekday = nth[2].lower()
    if weekday not in _WEEKDAY:
        raise ValueError(f"unknown weekday {nth[2]!r}")
    offset = int(nth[3] or 0)
    if not -6 <= offset <= 6:
        raise ValueError("the offset is between -6 and 6 days")
    return Recurrence(f"{rule};BYDAY={_WEEK_OF_MONTH[nth[1].lower()]}{_WEEKDAY[weekday]}", offset)


def iana_time_zone(windows_name: str | None) -> str:
    """The IANA zone of a Windows time-zone name (CLDR windowsZones, territory 001)."""
    zone = win_tz.get((windows_name or "").strip())
    if zone is None:
        raise ValueError("not a Windows time-zone name (e.g. 'GMT Standard Time', 'UTC')")
    return zone


def duration_minutes(text: str | None) -> int:
    match = _DURATION.fullmatch((text or "").strip())
    if not match or int(match[1]) * 60 + int(match[2]) == 0:
        raise ValueError("expected a positive duration hh:mm")
    return int(match[1]) * 60 + int(match[2])


def local_time(text: str | None, required: bool) -> datetime | None:
    if not (text or "").strip():
        if required:
            raise ValueError("missing")
        return None
    for layout in _LOCAL_TIMES:
        try:
            return datetime.strptime(text.strip(), layout)
        except ValueError:
            continue
    raise ValueError("expected YYYY-MM-DD hh:mm")


def configuration_schedules(configurations: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration (and capture) with its schedule parsed (RECURRENCE_COLUMNS).
    A field that cannot be read fails naming the file, the configuration, the field and its value."""
    rows = []
    for c in configurations.itertuples(index=False):
        fields = (
            ("maintenanceWindow.recurEvery", c.recur_every, parse_recur_every),
            ("maintenanceWindow.timeZone", c.time_zone, iana_time_zone),
            ("maintenanceWindow.startDateTime", c.start_date_time, lambda v: local_time(v, True)),
            ("maintenanceWindow.expirationDateTime", c.expiration_date_time, lambda v: local_time(v, False)),
            ("maintenanceWindow.duration", c.duration, duration_minutes),
        )
        parsed = []
        for field, value, parse in fields:
            try:
                parsed.append(parse(None if pd.isna(value) else value))
            except ValueError as error:
                raise ValueError(f"{c.source_file}: maintenance configuration {c.configuration_id}: "
                                 f"{field} {value!r}: {error}") from None
        recurrence, zone, starts, expires, minutes = parsed
        rows.append((c.configuration_id, c.source_file, recurrence.rrule, recurrence.offset_days, zone,
                     starts, expires, minutes))
    return pd.DataFrame(rows, columns=RECURRENCE_COLUMNS).astype(
        {"offset_days": "int32", "duration_minutes": "int32", "starts_at": "datetime64[us]",
         "expires_at": "datetime64[us]"})
