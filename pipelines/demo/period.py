"""Time axis and identifier helpers shared by the demo generator modules.

Every instant is an int64 count of microseconds since the Unix epoch (UTC), so numpy can carry
times through the simulation and DuckDB can turn them back into timestamps (`make_timestamp`).
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import numpy as np

HOUR_US = 3_600_000_000
DAY_US = 24 * HOUR_US
# The catalog starts this many months before the period, so supersedence chains are long.
CATALOG_LEAD_MONTHS = 6
# The demo is anchored here when no start is given (not the wall clock: deterministic output).
DEFAULT_END = date(2026, 11, 27)


def to_us(moment: datetime) -> int:
    return int((moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1))


def day_us(day: date, hour: int = 0, minute: int = 0) -> int:
    return to_us(datetime.combine(day, time(hour, minute), tzinfo=UTC))


def local_us(day: date, hhmm: str, tz: str) -> int:
    """A local wall-clock time of a maintenance window, as UTC microseconds."""
    hour, minute = (int(part) for part in hhmm.split(":"))
    return to_us(datetime.combine(day, time(hour, minute), tzinfo=ZoneInfo(tz)))


def us_to_datetime(us: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=int(us))


def iso(us: int) -> str:
    """ISO 8601 with 7 fraction digits and Z, the way Azure prints instants."""
    return us_to_datetime(us).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def patch_tuesday(year: int, month: int) -> date:
    """Second Tuesday of the month: Microsoft's monthly release day."""
    first = date(year, month, 1)
    first_tuesday = first + timedelta(days=(calendar.TUESDAY - first.weekday()) % 7)
    return first_tuesday + timedelta(days=7)


@dataclass(frozen=True, order=True)
class Month:
    year: int
    month: int

    @property
    def doc_id(self) -> str:
        return f"{self.year}-{calendar.month_abbr[self.month]}"

    @property
    def title(self) -> str:
        return f"{calendar.month_name[self.month]} {self.year} Security Updates"

    @property
    def tuesday(self) -> date:
        return patch_tuesday(self.year, self.month)

    @property
    def serial(self) -> int:
        """Months since January 2026: KB and build numbers grow with it, independent of seed."""
        return (self.year - 2026) * 12 + self.month - 1

    @property
    def prefix(self) -> str:
        return f"{self.year}-{self.month:02d}"


@dataclass(frozen=True)
class Period:
    start: date
    days: int

    @property
    def end(self) -> date:
        return self.start + timedelta(days=self.days - 1)

    @property
    def start_us(self) -> int:
        return day_us(self.start)

    @property
    def end_us(self) -> int:
        """The last instant of the period (end of the last day)."""
        return day_us(self.end) + DAY_US - 1

    def dates(self) -> list[date]:
        return [self.start + timedelta(days=i) for i in range(self.days)]

    def months(self) -> list[Month]:
        serial = self.start.year * 12 + self.start.month - 1 - CATALOG_LEAD_MONTHS
        last = self.end.year * 12 + self.end.month - 1
        return [Month(s // 12, s % 12 + 1) for s in range(serial, last + 1)]


_HEX = np.array([f"{i:02x}" for i in range(256)])


def guids(rng: np.random.Generator, n: int) -> np.ndarray:
    """n random version-4 GUID strings, lower case, built without a Python loop."""
    raw = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    hexes = _HEX[raw]
    out = np.full(n, "", dtype=object)
    for i in range(16):
        if i in (4, 6, 8, 10):
            out = out + "-"
        out = out + hexes[:, i].astype(object)
    return out.astype(str)
