"""CISA Known Exploited Vulnerabilities: the JSON feed or its CSV form (data-sources.md 2).

DuckDB reads either file; one SELECT normalizes both to the same rows (CVE upper-case, text
trimmed, dates typed, `cwes` a list: the CSV writes it as one string "CWE-59, CWE-436").
Each file is one dated snapshot: the JSON names it (catalogVersion, dateReleased); the CSV does
not, so its snapshot is dated by its newest dateAdded (CISA versions the catalog by that day).
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa

FILE_PATTERNS = ("*.json", "*.json.gz", "*.csv", "*.csv.gz")

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
    FROM read_csv($path, header = true, all_varchar = true, quote = '"', escape = '"')
"""

_NORMALIZE = """
    WITH source AS ({source}),
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
        WHERE nullif(trim(cveID), '') IS NOT NULL
    )
    SELECT
        coalesce(catalog_version, strftime(max(date_added) OVER (), '%Y.%m.%d')) AS catalog_version,
        coalesce(date_released, CAST(max(date_added) OVER () AS TIMESTAMPTZ)) AS date_released,
        catalog_count,
        cve, vendor_project, product, vulnerability_name, date_added, short_description,
        required_action, due_date, known_ransomware_campaign_use, notes, cwes
    FROM typed
    ORDER BY cve
"""


def kev_files(folder: Path) -> list[Path]:
    return sorted({p for pattern in FILE_PATTERNS for p in folder.glob(pattern) if p.is_file()})


def read_kev(conn: duckdb.DuckDBPyConnection, path: Path) -> pa.Table:
    """One KEV file (JSON feed or CSV) -> normalized rows of its snapshot."""
    is_csv = path.name.lower().removesuffix(".gz").endswith(".csv")
    query = _NORMALIZE.format(source=_CSV_SOURCE if is_csv else _JSON_SOURCE)
    try:
        # A cursor of its own: reading a file needs no transaction, and DuckDB refuses a new
        # relation while the caller's connection holds an unconsumed result.
        with conn.cursor() as cursor:
            table = cursor.sql(query, params={"path": str(path)}).to_arrow_table()
    except duckdb.Error as exc:
        raise ValueError(f"{path.name}: not a readable KEV catalog ({exc})") from exc
    if table.num_rows and table.column("catalog_count")[0].as_py() not in (None, table.num_rows):
        raise ValueError(
            f"{path.name}: catalog says count={table.column('catalog_count')[0].as_py()} "
            f"but lists {table.num_rows} vulnerabilities"
        )
    return table
