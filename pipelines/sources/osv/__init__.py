"""OSV advisories for non-Microsoft software (https://ossf.github.io/osv-schema/).

Files under `<estate>/bulletins/osv/` (subfolders allowed): `*.json` or `*.json.gz`, each one
advisory object or a JSON array of advisories (the form of `osv.dev` exports and of
`ubuntu-security-notices`/Debian security tracker dumps), or an ecosystem's `all.zip` as the
osv-vulnerabilities bucket serves it (one advisory per member).

Two raw tables come out of a file:

- advisories: one row per advisory with its dates, ids, texts and the full record as JSON; the
  CVEs it is about (`CVE-...` ids found in `id`, `aliases`, `upstream` and `related`: Ubuntu USN
  and Debian DSA records list their CVEs in `related`/`upstream`, not in `aliases`); the CVSS
  vector it carries (v3 preferred, then v4, then v2) with its base score computed here (SQL cannot
  score a vector); and the distribution's own rating (`severity[type=Ubuntu]`, else
  `database_specific.severity`).
- affected: one row per (advisory, affected package, package name, range event pair). Ranges of
  type ECOSYSTEM/SEMVER are read event by event: each `fixed` (or `last_affected`) closes the
  preceding `introduced`. An affected package without any fix keeps one row with the version
  columns NULL, so nothing is dropped. Ubuntu records list the binary packages built from the
  source package (`ecosystem_specific.binaries`): each gets its own row (package_kind 'binary',
  fixed at its binary_version), because Azure Update Manager names Linux patches by binary
  package (`libssl3_3.0.2-0ubuntu1.15`, not only `openssl_...`).

Modules: `reader.py` (a file to rows), `live.py` (the OSV API), `assets.py`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

FILE_PATTERNS = ("*.json", "*.json.gz", "*.zip")
_CVE = re.compile(r"CVE-\d{4}-\d{4,}", re.IGNORECASE)
# Severity types of the OSV schema, best first for a base score comparable with MSRC's CVSS 3.x.
_CVSS_ORDER = ("CVSS_V3", "CVSS_V4", "CVSS_V2")

ADVISORIES_SCHEMA = pa.schema(
    [
        ("advisory_id", pa.string()),
        ("schema_version", pa.string()),
        ("modified_at", pa.timestamp("us", tz="UTC")),
        ("published_at", pa.timestamp("us", tz="UTC")),
        ("withdrawn_at", pa.timestamp("us", tz="UTC")),
        ("aliases", pa.list_(pa.string())),
        ("related", pa.list_(pa.string())),
        ("upstream", pa.list_(pa.string())),
        ("cves", pa.list_(pa.string())),
        ("summary", pa.string()),
        ("details", pa.string()),
        ("severity_json", pa.string()),
        ("cvss_type", pa.string()),
        ("cvss_vector", pa.string()),
        ("cvss_base", pa.float64()),
        ("vendor_severity", pa.string()),
        ("advisory_url", pa.string()),
        ("database_specific_json", pa.string()),
        ("affected_count", pa.int32()),
        ("document_json", pa.string()),
    ]
)
AFFECTED_SCHEMA = pa.schema(
    [
        ("advisory_id", pa.string()),
        ("affected_index", pa.int32()),
        ("ecosystem", pa.string()),
        ("source_package", pa.string()),
        ("package", pa.string()),
        ("package_kind", pa.string()),
        ("purl", pa.string()),
        ("range_type", pa.string()),
        ("introduced", pa.string()),
        ("fixed_version", pa.string()),
        ("last_affected", pa.string()),
        ("listed_versions", pa.int32()),
    ]
)
SCHEMAS = {"advisories": ADVISORIES_SCHEMA, "affected": AFFECTED_SCHEMA}


class OsvAdvisoryError(ValueError):
    """A file that is not a readable OSV advisory (the message names file and entry)."""


@dataclass
class ParsedFile:
    advisories: list[dict[str, Any]]
    affected: list[dict[str, Any]]


def osv_files(folder: Path) -> list[Path]:
    """Advisory files under the folder and its subfolders (not the archive of live answers),
    sorted by path."""
    return sorted(
        {
            p
            for pattern in FILE_PATTERNS
            for p in folder.rglob(pattern)
            if p.is_file() and "archive" not in p.relative_to(folder).parts
        }
    )


# ---- live client (https://google.github.io/osv.dev/api/) ----

DEFAULT_BASE_URL = "https://api.osv.dev"
URL_ENV = "PATCHLEDGER_OSV_URL"
BATCH_SIZE = 1000  # /v1/querybatch accepts at most 1,000 queries
