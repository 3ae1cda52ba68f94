"""Reading one CVE JSON 5 record: the CISA ADP container's SSVC decision points."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pyarrow as pa

from pipelines.sources.bulletins import utc_timestamp
from pipelines.sources.vulnrichment import (
    _CVE,
    ADP_TITLE,
    DECISION_POINTS,
    SCHEMA,
    VulnrichmentError,
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
