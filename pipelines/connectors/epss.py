"""FIRST EPSS daily scores: epss_scores-YYYY-MM-DD.csv.gz (data-sources.md 3).

Line 1 is a comment `#model_version:v2025.03.14,score_date:2025-09-03T12:55:00Z` that must not
reach the CSV reader as the header; it names the snapshot. Files without it are dated by the
date in their name.
"""

from __future__ import annotations

import gzip
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb
import pyarrow as pa

from pipelines.connectors.msrc import utc_timestamp

FILE_PATTERNS = ("*.csv.gz", "*.csv")
_NAME_DATE = re.compile(r"(\d{4}-\d{2}-\d{2})")

_READ = """
    SELECT
        upper(trim(cve)) AS cve,
        CAST(epss AS DOUBLE) AS epss,
        CAST(percentile AS DOUBLE) AS percentile,
        CAST($model_version AS VARCHAR) AS model_version,
        CAST($score_date AS DATE) AS score_date
    FROM read_csv($path, skip = $skip, header = true, all_varchar = true,
                  columns = {'cve': 'VARCHAR', 'epss': 'VARCHAR', 'percentile': 'VARCHAR'})
    WHERE nullif(trim(cve), '') IS NOT NULL
    ORDER BY cve
"""


@dataclass(frozen=True)
class EpssHeader:
    model_version: str | None
    score_date: date | None
    has_comment: bool


def epss_files(folder: Path) -> list[Path]:
    return sorted({p for pattern in FILE_PATTERNS for p in folder.glob(pattern) if p.is_file()})


def read_header(path: Path) -> EpssHeader:
    """The `#model_version:...,score_date:...` comment line, if the file has one."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8-sig") as handle:
        first = handle.readline().strip()
    if not first.startswith("#"):
        return EpssHeader(None, None, False)
    fields = dict(
        part.split(":", 1) for part in first.lstrip("#").split(",") if ":" in part
    )
    stamp = utc_timestamp(fields.get("score_date", "").strip().replace("+0000", "+00:00"))
    return EpssHeader(fields.get("model_version", "").strip() or None, stamp and stamp.date(), True)


def read_epss(conn: duckdb.DuckDBPyConnection, path: Path) -> pa.Table:
    """One daily file -> (cve, epss, percentile, model_version, score_date)."""
    header = read_header(path)
    score_date = header.score_date
    if score_date is None and (match := _NAME_DATE.search(path.name)):
        score_date = date.fromisoformat(match.group(1))
    if score_date is None:
        raise ValueError(f"{path.name}: no score_date in the comment line nor a date in the name")
    params = {
        "path": str(path),
        "skip": 1 if header.has_comment else 0,
        "model_version": header.model_version,
        "score_date": score_date,
    }
    try:
        with conn.cursor() as cursor:  # see kev.read_kev
            return cursor.sql(_READ, params=params).to_arrow_table()
    except duckdb.Error as exc:
        raise ValueError(f"{path.name}: not a readable EPSS file ({exc})") from exc
