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
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path
from typing import Any

import pyarrow as pa

from pipelines.connectors.http import ChannelClient, Validators, archive, base_url, write_atomic
from pipelines.connectors.msrc import utc_timestamp

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


def _timestamp(value: Any, where: str) -> Any:
    try:
        return utc_timestamp(value) if isinstance(value, str) else None
    except ValueError:
        raise VulnrichmentError(f"{where}: {value!r} is not an ISO 8601 timestamp") from None


def parse_record(data: bytes, name: str) -> dict[str, Any]:
    """One CVE JSON 5 record -> one row of SCHEMA. `name` is the file's estate-relative name."""
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    try:
        record = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise VulnrichmentError(f"{name}: not JSON ({exc})") from exc
    if not isinstance(record, dict) or record.get("dataType") != "CVE_RECORD":
        found = record.get("dataType") if isinstance(record, dict) else type(record).__name__
        raise VulnrichmentError(f"{name}: dataType: {found!r} is not 'CVE_RECORD' (CVE JSON 5)")
    metadata = record.get("cveMetadata") or {}
    cve = str(metadata.get("cveId") or "").upper()
    expected = Path(name).name.split(".")[0].upper()
    if not _CVE.match(cve):
        raise VulnrichmentError(f"{name}: cveMetadata.cveId: {metadata.get('cveId')!r} is not a CVE id")
    if expected.startswith("CVE-") and expected != cve:
        raise VulnrichmentError(f"{name}: cveMetadata.cveId: {cve!r} is not the CVE the file is named for")
    row: dict[str, Any] = dict.fromkeys(SCHEMA.names)
    row.update(
        cve=cve,
        record_state=metadata.get("state"),
        record_updated_at=_timestamp(metadata.get("dateUpdated"), f"{name}: cveMetadata.dateUpdated"),
    )
    adps = (record.get("containers") or {}).get("adp") or []
    cisa = [a for a in adps if isinstance(a, dict) and a.get("title") == ADP_TITLE]
    if not cisa:
        return row
    adp = cisa[0]
    row["adp_updated_at"] = _timestamp(
        (adp.get("providerMetadata") or {}).get("dateUpdated"), f"{name}: adp.providerMetadata.dateUpdated"
    )
    for n, metric in enumerate(adp.get("metrics") or []):
        other = metric.get("other") if isinstance(metric, dict) else None
        if not isinstance(other, dict) or other.get("type") != "ssvc":
            continue
        where = f"{name}: adp[{ADP_TITLE}].metrics[{n}].other.content"
        content = other.get("content") or {}
        row["ssvc_version"] = content.get("version")
        row["ssvc_role"] = content.get("role")
        row["ssvc_timestamp"] = _timestamp(content.get("timestamp"), f"{where}.timestamp")
        for option in content.get("options") or []:
            if not isinstance(option, dict):
                raise VulnrichmentError(f"{where}.options: {option!r} is not an object")
            for point, value in option.items():
                if point not in DECISION_POINTS:
                    raise VulnrichmentError(
                        f"{where}.options: unknown decision point {point!r} "
                        f"(known: {', '.join(DECISION_POINTS)})"
                    )
                column, allowed = DECISION_POINTS[point]
                text = str(value).strip().lower()
                if text not in allowed:
                    raise VulnrichmentError(
                        f"{where}.options.{point}: unknown value {value!r} (known: {', '.join(allowed)})"
                    )
                row[column] = text
        break
    return row


def to_arrow(rows: list[dict[str, Any]], extra_columns: list[str]) -> pa.Table:
    schema = SCHEMA
    for column in extra_columns:
        schema = schema.append(pa.field(column, pa.string()))
    return pa.Table.from_pylist(rows, schema=schema)


# ---- live client ----


def client_from_env(**options: Any) -> ChannelClient:
    return ChannelClient(base_url(URL_ENV, DEFAULT_BASE_URL), **options)


def fetch_records(client: ChannelClient, cves: list[str], folder: Path) -> dict[str, int]:
    """GET each CVE's record (conditional on its previous ETag / Last-Modified); a changed record
    is validated, archived with its sha256 and written at its repository path under `folder`. A
    404 means CISA has not enriched the CVE. Returns counts: fetched, unchanged, absent."""
    validators = Validators(folder / "archive")
    counts = {"fetched": 0, "unchanged": 0, "absent": 0}
    for cve in sorted({c.upper() for c in cves if _CVE.match(c.upper())}):
        path = record_path(cve)
        response = client.get(f"/{path}", accept=(304, 404), headers=validators.headers(path))
        if response.status_code == 404:
            counts["absent"] += 1
            continue
        if response.status_code == 304:
            counts["unchanged"] += 1
            continue
        parse_record(response.content, f"{URL_ENV} /{path}")  # fails before anything is written
        archive(folder / "archive", cve, response.content)
        write_atomic(folder / path, response.content)
        validators.remember(path, response)
        counts["fetched"] += 1
    return counts
