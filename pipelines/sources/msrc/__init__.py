"""MSRC Security Update Guide (CVRF API v3.0): the formats and the folder layout.

Both forms carry the same document (data-sources.md 1.3): JSON wraps text in {"Value": ...} and
uses integer enums, XML uses namespaced elements and string enums (`parser.py` reads either).
Flattening (data-sources.md 1.7): one fix row per (CVE, affected ProductID, Vendor Fix
remediation naming that product); an affected product with no vendor fix still gets one row with
the remediation columns NULL, so no affected product is dropped.

Layout: `<estate>/bulletins/msrc/` holds the month documents (`*.json`, `*.xml`, optionally
`.gz`), the `/updates` index as `updates.json`, and `archive/` (every live answer, by sha256).
The source's modules: `values.py` (field parsers), `parser.py` (document -> rows), `index.py`
(the /updates index), `live.py` (the API client), `resource.py` (the Dagster resource),
`assets.py` (raw assets).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

DEFAULT_BASE_URL = "https://api.msrc.microsoft.com/cvrf/v3.0"

# data-sources.md 1.4: JSON integer -> the XML string. 3/4 of Remediation.Type follow the CVRF 1.1
# order (None Available, Will Not Fix) and 6 = Release Notes is inferred; only Vendor Fix is used.
# Threat type 2 is CVRF 1.1's Target Set (read, not used).
THREAT_TYPES = {0: "Impact", 1: "Exploit Status", 2: "Target Set", 3: "Severity"}
REMEDIATION_TYPES = {
    0: "Workaround",
    1: "Mitigation",
    2: "Vendor Fix",
    3: "None Available",
    4: "Will Not Fix",
    5: "Known Issue",
    6: "Release Notes",
}
NOTE_TYPES = {
    0: "General",
    1: "Details",
    2: "Description",
    3: "Summary",
    4: "FAQ",
    5: "Legal Disclaimer",
    6: "Other",
    7: "Tag",
    8: "CNA",
}

MONTHS = (
    "January February March April May June July August September October November December"
).split()
_MONTH_ABBR = {m[:3].lower(): i + 1 for i, m in enumerate(MONTHS)}
# "2024-Jan", "2018-FEB", "2017-May-B": year, month, optional suffix.
_DOCUMENT_ID = re.compile(r"^(\d{4})-([A-Za-z]{3})(?:-([A-Za-z0-9]+))?$")
MARINER_TITLE = "Mariner Release Notes"
# Months that MSRC publishes without any Vulnerability array (issue #43); every other empty
# month is a transient service error.
KNOWN_EMPTY_DOCUMENTS = frozenset({"2017-May-B", "2016-Oct"})

# XML containers whose children are the items of a JSON array.
_XML_LISTS = frozenset(
    {
        "DocumentNotes",
        "Notes",
        "RevisionHistory",
        "ProductStatuses",
        "Threats",
        "CVSSScoreSets",
        "Remediations",
        "Acknowledgments",
        "AffectedFiles",
    }
)


DOCUMENT_STATUSES = {0: "Draft", 1: "Interim", 2: "Final"}
# The namespaces of a CVRF 1.1 document; any other (or none) is not an MSRC CVRF document.
CVRF_NAMESPACE = "http://www.icasi.org/CVRF/schema/cvrf/1.1"
XML_NAMESPACES = frozenset(
    {
        CVRF_NAMESPACE,
        "http://www.icasi.org/CVRF/schema/vuln/1.1",
        "http://www.icasi.org/CVRF/schema/prod/1.1",
        "http://www.icasi.org/CVRF/schema/common/1.1",
    }
)


class MsrcDocumentError(ValueError):
    """A month document that must not replace what the warehouse already holds."""


# ---- Arrow schemas of the raw tables (source_file, source_sha256, ingest_run added on load) ----

DOCUMENTS_SCHEMA = pa.schema(
    [
        ("document_id", pa.string()),
        ("alias", pa.string()),
        ("title", pa.string()),
        ("document_type", pa.string()),
        ("document_kind", pa.string()),
        ("release_month", pa.date32()),
        ("document_status", pa.string()),
        ("version", pa.string()),
        ("revision", pa.string()),
        ("initial_release_at", pa.timestamp("us", tz="UTC")),
        ("current_release_at", pa.timestamp("us", tz="UTC")),
        ("vulnerability_count", pa.int32()),
        ("product_count", pa.int32()),
        ("source_format", pa.string()),
    ]
)
PRODUCTS_SCHEMA = pa.schema(
    [
        ("document_id", pa.string()),
        ("product_id", pa.string()),
        ("product_name", pa.string()),
        ("product_family", pa.string()),
        ("cpe", pa.string()),
    ]
)
VULNERABILITIES_SCHEMA = pa.schema(
    [
        ("document_id", pa.string()),
        ("cve", pa.string()),
        ("title", pa.string()),
        ("publicly_disclosed", pa.bool_()),
        ("exploited", pa.bool_()),
        ("latest_release_exploitability", pa.string()),
        ("older_release_exploitability", pa.string()),
        ("exploit_status_raw", pa.string()),
        ("cwes", pa.list_(pa.string())),
        ("tags", pa.list_(pa.string())),
        ("cna", pa.string()),
        ("customer_action_required", pa.bool_()),
    ]
)
FIXES_SCHEMA = pa.schema(
    [
        ("document_id", pa.string()),
        ("cve", pa.string()),
        ("product_id", pa.string()),
        ("severity", pa.string()),
        ("impact", pa.string()),
        ("cvss_base", pa.float64()),
        ("cvss_temporal", pa.float64()),
        ("cvss_vector", pa.string()),
        ("remediation_type", pa.string()),
        ("kb", pa.string()),
        ("fix_description", pa.string()),
        ("supersedes", pa.list_(pa.string())),
        ("supersedence_raw", pa.string()),
        ("restart_required", pa.string()),
        ("sub_type", pa.string()),
        ("fixed_build", pa.string()),
        ("remediation_url", pa.string()),
    ]
)
SCHEMAS = {
    "documents": DOCUMENTS_SCHEMA,
    "products": PRODUCTS_SCHEMA,
    "vulnerabilities": VULNERABILITIES_SCHEMA,
    "fixes": FIXES_SCHEMA,
}


@dataclass
class ParsedDocument:
    """The normalized rows of one month document."""

    document_id: str
    current_release_at: datetime
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


# The /updates index saved beside the month documents (offline mode, or written by a live fetch).
INDEX_FILE_NAMES = frozenset({"updates.json", "updates.json.gz"})


def document_files(folder: Path) -> list[Path]:
    """Month documents in a folder: *.json, *.xml, either optionally .gz (sorted by name); the
    /updates index file (updates.json) is not a month document."""
    patterns = ("*.json", "*.json.gz", "*.xml", "*.xml.gz")
    return sorted(
        {
            p
            for pattern in patterns
            for p in folder.glob(pattern)
            if p.is_file() and p.name.lower() not in INDEX_FILE_NAMES
        }
    )


def index_file(folder: Path) -> Path | None:
    """The saved /updates index of a folder, if any."""
    for name in sorted(INDEX_FILE_NAMES):
        if (folder / name).is_file():
            return folder / name
    return None


INDEX_SCHEMA = pa.schema(
    [
        ("document_id", pa.string()),
        ("alias", pa.string()),
        ("document_title", pa.string()),
        ("severity", pa.string()),
        ("initial_release_at", pa.timestamp("us", tz="UTC")),
        ("current_release_at", pa.timestamp("us", tz="UTC")),
        ("cvrf_url", pa.string()),
    ]
)

