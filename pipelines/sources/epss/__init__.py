"""FIRST EPSS daily scores: epss_scores-YYYY-MM-DD.csv.gz (data-sources.md 3).

Line 1 is a comment `#model_version:v2025.03.14,score_date:2025-09-03T12:55:00Z` that must not
reach the CSV reader as the header; it names the snapshot. Files without it are dated by the
date in their name.

Bad input (tests/test_bad_inputs.py): a daily file is one snapshot, so any problem fails it (the
asset's transaction keeps the previous days) with an EpssFileError naming the file and, where it
applies, the row (1 = first data row) and the field: not UTF-8 (byte offset), empty, no date,
a missing column (columns are matched by header name, never by position), a cve not shaped
CVE-YYYY-NNNN, an epss or percentile that is not a number in [0, 1], the same CVE twice with
different scores. Legal oddities load: extra columns are ignored, a row repeated identically is
kept once, a score_date with any offset is converted to its UTC day.

Layout: `<estate>/bulletins/epss/` (`epss_scores-YYYY-MM-DD.csv[.gz]`; `archive/` holds the live
answers). Modules: `reader.py` (a file to rows), `live.py` (the daily file), `assets.py`.
"""

from __future__ import annotations

import re
from pathlib import Path


class EpssFileError(ValueError):
    """An EPSS file that cannot be ingested; the message names the file, row and field."""


FILE_PATTERNS = ("*.csv.gz", "*.csv")
_NAME_DATE = re.compile(r"(\d{4}-\d{2}-\d{2})")

COLUMNS = ("cve", "epss", "percentile")


def epss_files(folder: Path) -> list[Path]:
    return sorted({p for pattern in FILE_PATTERNS for p in folder.glob(pattern) if p.is_file()})


DEFAULT_BASE_URL = "https://epss.empiricalsecurity.com"
URL_ENV = "PATCHLEDGER_EPSS_URL"
