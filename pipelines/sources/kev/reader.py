"""Reading a KEV catalog file (JSON feed or CSV) into one snapshot's rows."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa

from pipelines.ingest.errors import SourceFileError
from pipelines.ingest.files import check_text_file
from pipelines.sources.bulletins import first_problem
from pipelines.sources.kev import CSV_COLUMNS, KevFileError

_JSON_COLUMNS = (
    "{'title': 'VARCHAR', 'catalogVersion': 'VARCHAR', 'dateReleased': 'VARCHAR',"
    " 'count': 'BIGINT', 'vulnerabilities': 'STRUCT(cveID VARCHAR, vendorProject VARCHAR,"
    " product VARCHAR, vulnerabilityName VARCHAR, dateAdded VARCHAR, shortDescription VARCHAR,"
    " requiredAction VARCHAR, dueDate VARCHAR, knownRansomwareCampaignUse VARCHAR,"
    " notes VARCHAR, cwes VARCHAR[])[]'}"
)

# One row per catalog entry, every field as text, cwes as a list: the common shape of both forms.
_JSON_SOURCE = f"""
    SELECT
        catalogVersion AS catalog_version,
        dateReleased AS date_released,
        "count" AS catalog_count,
        unnest(vulnerabilities, recursive := true)
    FROM read_json($path, columns = {_JSON_COLUMNS}, format = 'auto',
                   maximum_object_size = 268435456)
"""

_CSV_SOURCE = """
    SELECT
        NULL::VARCHAR AS catalog_version,
        NULL::VARCHAR AS date_released,
        NULL::BIGINT AS catalog_count,
        cveID, vendorProject, product, vulnerabilityName, dateAdded, shortDescription,
        requiredAction, dueDate, knownRansomwareCampaignUse, notes,
        list_filter(list_transform(string_split(coalesce(cwes, ''), ','), lambda x: trim(x)),
                    lambda x: x <> '') AS cwes
    FROM read_csv($path, header = true, all_varchar = true, quote = '"', escape = '"',
                  strict_mode = true, max_line_size = 67108864)
"""

# Every bad cell of the numbered source rows (_kev_source), as (_row, field, value, reason).
_PROBLEMS = r"""
    SELECT _row, 'cveID' AS field, cveID AS value,
           CASE WHEN nullif(trim(cveID), '') IS NULL THEN 'a value is required'
                ELSE 'not a CVE id CVE-YYYY-NNNN' END AS reason
    FROM _kev_source WHERE NOT regexp_full_match(upper(trim(coalesce(cveID, ''))), 'CVE-\d{4}-\d{4,19}')
    UNION ALL
    SELECT _row, 'dateAdded', dateAdded, 'not a date YYYY-MM-DD' FROM _kev_source
    WHERE NOT regexp_full_match(trim(coalesce(dateAdded, '')), '\d{4}-\d{2}-\d{2}')
       OR try_cast(trim(dateAdded) AS DATE) IS NULL
    UNION ALL
    SELECT _row, 'dueDate', dueDate, 'not a date YYYY-MM-DD' FROM _kev_source
    WHERE nullif(trim(dueDate), '') IS NOT NULL
      AND (NOT regexp_full_match(trim(dueDate), '\d{4}-\d{2}-\d{2}') OR try_cast(trim(dueDate) AS DATE) IS NULL)
    UNION ALL
    SELECT _row, 'knownRansomwareCampaignUse', knownRansomwareCampaignUse, 'must be Known or Unknown'
    FROM _kev_source
    WHERE nullif(trim(knownRansomwareCampaignUse), '') IS NOT NULL
      AND trim(knownRansomwareCampaignUse) NOT IN ('Known', 'Unknown')
    UNION ALL
    SELECT _row, 'dateReleased', date_released, 'not an ISO 8601 timestamp' FROM _kev_source
    WHERE nullif(trim(date_released), '') IS NOT NULL AND try_cast(trim(date_released) AS TIMESTAMPTZ) IS NULL
    ORDER BY _row, field
"""

_NORMALIZE = """
    WITH source AS (SELECT * EXCLUDE (_row) FROM _kev_source),
    typed AS (
        SELECT
            nullif(trim(catalog_version), '') AS catalog_version,
            CAST(nullif(trim(date_released), '') AS TIMESTAMPTZ) AS date_released,
            catalog_count,
            upper(trim(cveID)) AS cve,
            nullif(trim(vendorProject), '') AS vendor_project,
            nullif(trim(product), '') AS product,
            nullif(trim(vulnerabilityName), '') AS vulnerability_name,
            CAST(nullif(trim(dateAdded), '') AS DATE) AS date_added,
            nullif(trim(shortDescription), '') AS short_description,
            nullif(trim(requiredAction), '') AS required_action,
            CAST(nullif(trim(dueDate), '') AS DATE) AS due_date,
            nullif(trim(knownRansomwareCampaignUse), '') AS known_ransomware_campaign_use,
            nullif(trim(notes), '') AS notes,
            coalesce(list_transform(cwes, lambda x: trim(x)), []::VARCHAR[]) AS cwes
        FROM source
    ),
    -- An entry repeated identically is one entry.
    distinct_rows AS (SELECT DISTINCT * FROM typed)
    SELECT
        coalesce(catalog_version, strftime(max(date_added) OVER (), '%Y.%m.%d')) AS catalog_version,
        coalesce(date_released, CAST(max(date_added) OVER () AS TIMESTAMPTZ)) AS date_released,
        catalog_count,
        cve, vendor_project, product, vulnerability_name, date_added, short_description,
        required_action, due_date, known_ransomware_campaign_use, notes, cwes
    FROM distinct_rows
    ORDER BY cve
"""



def read_kev(conn: duckdb.DuckDBPyConnection, path: Path) -> pa.Table:
    """One KEV file (JSON feed or CSV) -> normalized rows of its snapshot."""
    is_csv = path.name.lower().removesuffix(".gz").endswith(".csv")
    try:
        check_text_file(path, path.name)
    except SourceFileError as exc:
        raise KevFileError(str(exc)) from exc
    source = _CSV_SOURCE if is_csv else _JSON_SOURCE
    # A cursor of its own: reading a file needs no transaction, and DuckDB refuses a new
    # relation while the caller's connection holds an unconsumed result.
    with conn.cursor() as cursor:
        try:
            if is_csv:
                header = cursor.execute(
                    "SELECT * FROM read_csv($path, header = true, all_varchar = true) LIMIT 0",
                    {"path": str(path)},
                ).description
                missing = [c for c in CSV_COLUMNS if c not in {d[0] for d in header}]
                if missing:
                    raise KevFileError(f"{path.name}: header: missing column(s) {', '.join(missing)}")
            cursor.execute(
                "CREATE OR REPLACE TEMP TABLE _kev_source AS "
                f"SELECT row_number() OVER () AS _row, * FROM ({source})",
                {"path": str(path)},
            )
        except duckdb.Error as exc:
            raise KevFileError(f"{path.name}: not a readable KEV catalog ({exc})") from exc
        try:
            if problem := first_problem(cursor, _PROBLEMS, path.name):
                raise KevFileError(problem)
            conflicts = cursor.execute(
                "SELECT upper(trim(cveID)), list(_row ORDER BY _row) FROM _kev_source "
                f"GROUP BY ALL HAVING count(DISTINCT ({', '.join(CSV_COLUMNS[1:])})) > 1 "
                "ORDER BY 2 LIMIT 1"
            ).fetchall()
            if conflicts:
                cve, rows = conflicts[0]
                raise KevFileError(
                    f"{path.name}: rows {', '.join(map(str, rows))}, field cveID: {cve} is listed "
                    "more than once with different content"
                )
            listed = cursor.execute("SELECT count(*) FROM _kev_source").fetchall()[0][0]
            table = cursor.sql(_NORMALIZE).to_arrow_table()
        except duckdb.Error as exc:
            raise KevFileError(f"{path.name}: not a readable KEV catalog ({exc})") from exc
        finally:
            cursor.execute("DROP TABLE IF EXISTS _kev_source")
    if table.num_rows and table.column("catalog_count")[0].as_py() not in (None, listed):
        raise KevFileError(
            f"{path.name}: field count: catalog says count={table.column('catalog_count')[0].as_py()} "
            f"but lists {listed} vulnerabilities"
        )
    return table
