"""CISA Vulnrichment: the SSVC decision points CISA adds to CVE records (github.com/cisagov/vulnrichment).

Each CVE is one CVE JSON 5 record, laid out as in the upstream repository:
`<year>/<n // 1000>xxx/CVE-<year>-<n>.json` (CVE-2024-21412 -> 2024/21xxx/CVE-2024-21412.json).
The ADP container titled "CISA ADP Vulnrichment" carries a metric `other.type = "ssvc"` whose
`content.options` list the three decision points: Exploitation (none, poc, active), Automatable
(yes, no) and Technical Impact (partial, total). BOD 26-04 reads Automatable and Technical Impact.

Strict: a file that is not a CVE record, whose cveId is not the one its name gives, or whose SSVC
options hold an unknown decision point or value fails with a message naming the file, the
element and the value. A record without the CISA container (or without SSVC in it) loads with the
SSVC columns NULL: the CVE has no Vulnrichment decision and BOD 26-04 falls back to the policy.

Layout: `<estate>/bulletins/vulnrichment/` as the repository lays records out (`archive/` holds
the live answers). Modules: `reader.py` (a record to its row), `live.py`, `assets.py`.
"""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa

DEFAULT_BASE_URL = "https://raw.githubusercontent.com/cisagov/vulnrichment/develop"
URL_ENV = "PATCHLEDGER_VULNRICHMENT_URL"
ADP_TITLE = "CISA ADP Vulnrichment"
_CVE = re.compile(r"^CVE-(\d{4})-(\d{4,})$")
# SSVC decision point -> (column, allowed values).
DECISION_POINTS = {
    "Exploitation": ("exploitation", ("none", "poc", "active")),
    "Automatable": ("automatable", ("yes", "no")),
    "Technical Impact": ("technical_impact", ("partial", "total")),
}

SCHEMA = pa.schema(
    [
        ("cve", pa.string()),
        ("record_state", pa.string()),
        ("record_updated_at", pa.timestamp("us", tz="UTC")),
        ("adp_updated_at", pa.timestamp("us", tz="UTC")),
        ("ssvc_version", pa.string()),
        ("ssvc_role", pa.string()),
        ("ssvc_timestamp", pa.timestamp("us", tz="UTC")),
        ("exploitation", pa.string()),
        ("automatable", pa.string()),
        ("technical_impact", pa.string()),
    ]
)


class VulnrichmentError(ValueError):
    """A Vulnrichment file that cannot be ingested (the message names file, element and value)."""


def record_path(cve: str) -> str:
    """The record's path in the repository: CVE-2024-21412 -> 2024/21xxx/CVE-2024-21412.json."""
    match = _CVE.match(cve.upper())
    if not match:
        raise ValueError(f"{cve!r} is not a CVE id")
    return f"{match.group(1)}/{int(match.group(2)) // 1000}xxx/{cve.upper()}.json"


def record_files(folder: Path) -> list[Path]:
    """CVE-*.json (or .json.gz) under the folder, the archive of live answers excluded."""
    return sorted(
        p
        for pattern in ("CVE-*.json", "CVE-*.json.gz")
        for p in folder.rglob(pattern)
        if p.is_file() and "archive" not in p.relative_to(folder).parts
    )
