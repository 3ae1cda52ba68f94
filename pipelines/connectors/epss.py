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
"""

from __future__ import annotations

import gzip
import re
import tempfile
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from pipelines.connectors.http import ChannelClient, archive, base_url, write_atomic
from pipelines.connectors.msrc import utc_timestamp
from pipelines.ingest.errors import SourceFileError
from pipelines.ingest.files import check_text_file


class EpssFileError(ValueError):
    """An EPSS file that cannot be ingested; the message names the file, row and field."""


FILE_PATTERNS = ("*.csv.gz", "*.csv")
_NAME_DATE = re.compile(r"(\d{4}-\d{2}-\d{2})")

COLUMNS = ("cve", "epss", "percentile")

_SOURCE = """
    SELECT row_number() OVER () AS _row, cve, epss, percentile
    FROM read_csv($path, skip = $skip, header = true, all_varchar = true, strict_mode = true)
"""

_PROBLEMS = r"""
    SELECT _row, 'cve' AS field, cve AS value, 'not a CVE id CVE-YYYY-NNNN' AS reason
    FROM _epss_source WHERE NOT regexp_full_match(upper(trim(coalesce(cve, ''))), 'CVE-\d{4}-\d{4,19}')
    UNION ALL
    SELECT _row, 'epss', epss, 'not a number between 0 and 1' FROM _epss_source
    WHERE coalesce(try_cast(trim(epss) AS DOUBLE) NOT BETWEEN 0 AND 1, true)
    UNION ALL
    SELECT _row, 'percentile', percentile, 'not a number between 0 and 1' FROM _epss_source
    WHERE coalesce(try_cast(trim(percentile) AS DOUBLE) NOT BETWEEN 0 AND 1, true)
    ORDER BY _row, field
"""

_CONFLICTS = """
    SELECT upper(trim(cve)), list(_row ORDER BY _row) FROM _epss_source GROUP BY ALL
    HAVING count(DISTINCT (CAST(epss AS DOUBLE), CAST(percentile AS DOUBLE))) > 1
    ORDER BY 2 LIMIT 1
"""

# A row repeated identically is one score.
_READ = """
    SELECT DISTINCT
        upper(trim(cve)) AS cve,
        CAST(trim(epss) AS DOUBLE) AS epss,
        CAST(trim(percentile) AS DOUBLE) AS percentile,
        CAST($model_version AS VARCHAR) AS model_version,
        CAST($score_date AS DATE) AS score_date
    FROM _epss_source
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
    try:
        check_text_file(path, path.name)
    except SourceFileError as exc:
        raise EpssFileError(str(exc)) from exc
    try:
        header = read_header(path)
    except ValueError as exc:
        raise EpssFileError(f"{path.name}: line 1: not a '#model_version:...,score_date:...' "
                            f"comment ({exc})") from exc
    score_date = header.score_date
    if score_date is None and (match := _NAME_DATE.search(path.name)):
        score_date = date.fromisoformat(match.group(1))
    if score_date is None:
        raise EpssFileError(f"{path.name}: no score_date in the comment line nor a date in the name")
    params = {"path": str(path), "skip": 1 if header.has_comment else 0}
    with conn.cursor() as cursor:  # see kev.read_kev
        try:
            described = cursor.execute(
                "SELECT * FROM read_csv($path, skip = $skip, header = true, all_varchar = true) LIMIT 0",
                params,
            ).description
            missing = [c for c in COLUMNS if c not in {d[0] for d in described}]
            if missing:
                raise EpssFileError(f"{path.name}: header: missing column(s) {', '.join(missing)}")
            cursor.execute("CREATE OR REPLACE TEMP TABLE _epss_source AS " + _SOURCE, params)
        except duckdb.Error as exc:
            raise EpssFileError(f"{path.name}: not a readable EPSS file ({exc})") from exc
        try:
            problems = cursor.execute(_PROBLEMS).fetchall()
            if problems:
                row, column, value, reason = problems[0]
                more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
                raise EpssFileError(f"{path.name}: row {row}, field {column}: {value!r}: {reason}{more}")
            conflicts = cursor.execute(_CONFLICTS).fetchall()
            if conflicts:
                cve, rows = conflicts[0]
                raise EpssFileError(
                    f"{path.name}: rows {', '.join(map(str, rows))}, field cve: {cve} is scored "
                    "more than once with different values"
                )
            return cursor.sql(
                _READ, params={"model_version": header.model_version, "score_date": score_date}
            ).to_arrow_table()
        except duckdb.Error as exc:
            raise EpssFileError(f"{path.name}: not a readable EPSS file ({exc})") from exc
        finally:
            cursor.execute("DROP TABLE IF EXISTS _epss_source")


# ---- live client ----

DEFAULT_BASE_URL = "https://epss.empiricalsecurity.com"
URL_ENV = "PATCHLEDGER_EPSS_URL"


def client_from_env(**options: Any) -> ChannelClient:
    return ChannelClient(base_url(URL_ENV, DEFAULT_BASE_URL), **options)


def fetch_daily(client: ChannelClient, folder: Path, today: date, days_back: int = 3) -> Path | None:
    """The newest daily file by explicit date (the `-current` alias is unreliable): today, then
    up to `days_back` days earlier while the server answers 404. A day already in the folder is
    not fetched again (a daily file never changes). A new file is validated like an offline one,
    archived with its sha256 and written as epss_scores-YYYY-MM-DD.csv.gz. Returns it, or None."""
    for offset in range(days_back + 1):
        day = today - timedelta(days=offset)
        name = f"epss_scores-{day.isoformat()}.csv.gz"
        if (folder / name).exists():
            return None
        response = client.get(f"/{name}", accept=(404,))
        if response.status_code == 404:
            continue
        data = response.content
        if data[:2] != b"\x1f\x8b":  # served with Content-Encoding: gzip, already inflated
            data = gzip.compress(data, mtime=0)
        with tempfile.TemporaryDirectory() as scratch:
            incoming = Path(scratch) / name
            incoming.write_bytes(data)
            with duckdb.connect() as conn:
                read_epss(conn, incoming)  # a bad answer fails here, nothing written
        archive(folder / "archive", name.removesuffix(".csv.gz"), data, ".csv")
        write_atomic(folder / name, data)
        return folder / name
    return None
