"""Reading one EPSS daily file into its rows (the comment line names the day)."""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb
import pyarrow as pa

from pipelines.ingest.errors import SourceFileError
from pipelines.ingest.files import check_text_file
from pipelines.sources.bulletins import first_problem, utc_timestamp
from pipelines.sources.epss import _NAME_DATE, COLUMNS, EpssFileError

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
            if problem := first_problem(cursor, _PROBLEMS, path.name):
                raise EpssFileError(problem)
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
