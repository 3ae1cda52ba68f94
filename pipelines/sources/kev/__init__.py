"""CISA Known Exploited Vulnerabilities: the JSON feed or its CSV form (data-sources.md 2).

DuckDB reads either file; one SELECT normalizes both to the same rows (CVE upper-case, text
trimmed, dates typed, `cwes` a list: the CSV writes it as one string "CWE-59, CWE-436").
Each file is one dated snapshot: the JSON names it (catalogVersion, dateReleased); the CSV does
not, so its snapshot is dated by its newest dateAdded (CISA versions the catalog by that day).

Bad input (tests/test_bad_inputs.py): a catalog is one authoritative snapshot, so any problem
fails the file (the asset's transaction keeps the previous snapshots) with a KevFileError naming
the file and, where it applies, the row (1 = first entry of `vulnerabilities` / first CSV data
row) and the field: not UTF-8 (byte offset), empty, broken JSON/CSV, a CSV column missing, an
entry without a cveID or with one not shaped CVE-YYYY-NNNN, a date that is not YYYY-MM-DD, a
knownRansomwareCampaignUse other than Known/Unknown, the same CVE twice with different content,
and a `count` that disagrees with the entries. Legal oddities load: extra CSV columns are
ignored, an entry repeated identically is kept once, text (HTML, formulas) is kept verbatim.

Layout: `<estate>/bulletins/kev/` (`*.json`, `*.csv`, optionally `.gz`; `archive/` holds the live
answers). Modules: `reader.py` (a file to rows), `live.py` (the feed), `assets.py`.
"""

from __future__ import annotations

from pathlib import Path

CSV_COLUMNS = (
    "cveID", "vendorProject", "product", "vulnerabilityName", "dateAdded", "shortDescription",
    "requiredAction", "dueDate", "knownRansomwareCampaignUse", "notes", "cwes",
)
RANSOMWARE_VALUES = ("Known", "Unknown")


class KevFileError(ValueError):
    """A KEV file that cannot be ingested; the message names the file, row and field."""


FILE_PATTERNS = ("*.json", "*.json.gz", "*.csv", "*.csv.gz")


def kev_files(folder: Path) -> list[Path]:
    return sorted({p for pattern in FILE_PATTERNS for p in folder.glob(pattern) if p.is_file()})


DEFAULT_BASE_URL = "https://www.cisa.gov/sites/default/files/feeds"
URL_ENV = "PATCHLEDGER_KEV_URL"
FEED_NAME = "known_exploited_vulnerabilities.json"
