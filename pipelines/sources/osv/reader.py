"""Reading OSV advisory files into advisory and affected-package rows."""

from __future__ import annotations

import gzip
import io
import json
import zipfile
from typing import Any

import pyarrow as pa
from cvss import CVSS2, CVSS3, CVSS4, CVSSError

from pipelines.sources.bulletins import utc_timestamp
from pipelines.sources.osv import _CVE, _CVSS_ORDER, SCHEMAS, OsvAdvisoryError, ParsedFile


def _strings(value: Any) -> list[str]:
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    return [str(v).strip() for v in items if v is not None and str(v).strip()]


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def cvss_base_score(kind: str, vector: str) -> float | None:
    """Base score of a CVSS vector (None when the vector cannot be scored)."""
    scorer = {"CVSS_V3": CVSS3, "CVSS_V4": CVSS4, "CVSS_V2": CVSS2}.get(kind)
    if scorer is None:
        return None
    try:
        return float(scorer(vector).base_score)
    except (CVSSError, ValueError, KeyError, IndexError):
        return None


def _checked_score(kind: str, vector: str, where: str) -> float:
    """The base score of the advisory's CVSS vector; a vector that cannot be scored is an error."""
    score = cvss_base_score(kind, vector)
    if score is None:
        raise OsvAdvisoryError(f"{where}: severity[type={kind}].score: {vector!r} is not a valid {kind} vector")
    return score


def _severity(record: dict[str, Any], where: str) -> tuple[str | None, str | None, float | None, str | None]:
    """(cvss_type, cvss_vector, cvss_base, vendor_severity) of an advisory."""
    entries = [e for e in record.get("severity") or [] if isinstance(e, dict)]
    by_type: dict[str, str] = {}
    for entry in entries:
        kind, score = _text(entry.get("type")), _text(entry.get("score"))
        if kind and score:
            by_type.setdefault(kind.upper(), score)
    cvss_type = next((k for k in _CVSS_ORDER if k in by_type), None)
    vector = by_type.get(cvss_type) if cvss_type else None
    base = _checked_score(cvss_type, vector, where) if cvss_type and vector else None
    database_specific = record.get("database_specific")
    vendor = by_type.get("UBUNTU") or (
        _text(database_specific.get("severity")) if isinstance(database_specific, dict) else None
    )
    return cvss_type, vector, base, vendor


def _advisory_url(record: dict[str, Any]) -> str | None:
    references = [r for r in record.get("references") or [] if isinstance(r, dict) and r.get("url")]
    for wanted in ("ADVISORY", "WEB"):
        for ref in references:
            if str(ref.get("type", "")).upper() == wanted:
                return str(ref["url"])
    return str(references[0]["url"]) if references else None


def _range_rows(ranges: Any) -> list[dict[str, Any]]:
    """Event pairs of the ranges: one row per fix (or last_affected) with its introduction."""
    rows: list[dict[str, Any]] = []
    for rng in ranges or []:
        if not isinstance(rng, dict):
            continue
        range_type = _text(rng.get("type"))
        introduced = None
        for event in rng.get("events") or []:
            if not isinstance(event, dict):
                continue
            if "introduced" in event:
                introduced = _text(event["introduced"])
            elif "fixed" in event or "last_affected" in event:
                rows.append(
                    {
                        "range_type": range_type,
                        "introduced": introduced,
                        "fixed_version": _text(event.get("fixed")),
                        "last_affected": _text(event.get("last_affected")),
                    }
                )
                introduced = None
        if introduced is not None:  # introduced and never fixed
            rows.append(
                {"range_type": range_type, "introduced": introduced, "fixed_version": None, "last_affected": None}
            )
    return rows


def flatten_advisory(record: Any, where: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One OSV record -> (advisory row, affected rows). `where` names the file and entry."""
    if not isinstance(record, dict):
        raise OsvAdvisoryError(f"{where}: an OSV advisory must be a JSON object")
    advisory_id = _text(record.get("id"))
    if not advisory_id:
        raise OsvAdvisoryError(f"{where}: field 'id' is missing")
    try:
        modified = utc_timestamp(record.get("modified"))
        published = utc_timestamp(record.get("published"))
        withdrawn = utc_timestamp(record.get("withdrawn"))
    except ValueError as exc:
        raise OsvAdvisoryError(f"{where} ({advisory_id}): bad timestamp: {exc}") from exc
    if modified is None:
        raise OsvAdvisoryError(f"{where} ({advisory_id}): field 'modified' is missing")
    aliases = _strings(record.get("aliases"))
    related = _strings(record.get("related"))
    upstream = _strings(record.get("upstream"))
    cves = sorted(
        {m.upper() for text in [advisory_id, *aliases, *upstream, *related] for m in _CVE.findall(text)}
    )
    cvss_type, vector, base, vendor = _severity(record, f"{where} ({advisory_id})")
    affected_entries = record.get("affected") or []
    if not isinstance(affected_entries, list):
        raise OsvAdvisoryError(f"{where} ({advisory_id}): field 'affected' must be a list")

    affected: list[dict[str, Any]] = []
    for index, entry in enumerate(affected_entries):
        if not isinstance(entry, dict):
            raise OsvAdvisoryError(f"{where} ({advisory_id}): affected[{index}] is not an object")
        package = entry.get("package") or {}
        ecosystem, name = _text(package.get("ecosystem")), _text(package.get("name"))
        if not ecosystem or not name:
            raise OsvAdvisoryError(
                f"{where} ({advisory_id}): affected[{index}].package needs ecosystem and name"
            )
        base_row = {
            "advisory_id": advisory_id,
            "affected_index": index,
            "ecosystem": ecosystem,
            "source_package": name,
            "purl": _text(package.get("purl")),
            "listed_versions": len(entry.get("versions") or []),
        }
        ranges = _range_rows(entry.get("ranges")) or [
            {"range_type": None, "introduced": None, "fixed_version": None, "last_affected": None}
        ]
        for rng in ranges:
            affected.append({**base_row, "package": name, "package_kind": "source", **rng})
        specific = entry.get("ecosystem_specific")
        binaries = specific.get("binaries") if isinstance(specific, dict) else None
        for binary in binaries or []:
            binary_name = _text(binary.get("binary_name")) if isinstance(binary, dict) else None
            if not binary_name or binary_name == name:
                continue
            binary_version = _text(binary.get("binary_version"))
            for rng in ranges:
                fixed = rng["fixed_version"]
                affected.append(
                    {
                        **base_row,
                        **rng,
                        "package": binary_name,
                        "package_kind": "binary",
                        # Only a fixing range takes the binary's version; others stay as they are.
                        "fixed_version": binary_version if fixed and binary_version else fixed,
                    }
                )

    database_specific = record.get("database_specific")
    advisory = {
        "advisory_id": advisory_id,
        "schema_version": _text(record.get("schema_version")),
        "modified_at": modified,
        "published_at": published,
        "withdrawn_at": withdrawn,
        "aliases": aliases,
        "related": related,
        "upstream": upstream,
        "cves": cves,
        "summary": _text(record.get("summary")),
        "details": _text(record.get("details")),
        "severity_json": json.dumps(record.get("severity"), sort_keys=True) if record.get("severity") else None,
        "cvss_type": cvss_type,
        "cvss_vector": vector,
        "cvss_base": base,
        "vendor_severity": vendor,
        "advisory_url": _advisory_url(record),
        "database_specific_json": json.dumps(database_specific, sort_keys=True) if database_specific else None,
        "affected_count": len(affected_entries),
        "document_json": json.dumps(record, sort_keys=True),
    }
    return advisory, affected


def _records(data: bytes, name: str) -> list[tuple[str, Any]]:
    """(where, record) of a file: one JSON object, an array, or every member of a zip."""
    if data[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as bundle:
                members = sorted(m for m in bundle.namelist() if m.endswith(".json"))
                return [r for m in members for r in _records(bundle.read(m), f"{name}:{m}")]
        except zipfile.BadZipFile as exc:
            raise OsvAdvisoryError(f"{name}: not a readable zip ({exc})") from exc
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    try:
        document = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise OsvAdvisoryError(f"{name}: not JSON ({exc})") from exc
    if isinstance(document, list):
        return [(f"{name}[{position}]", record) for position, record in enumerate(document)]
    return [(name, document)]


def parse_bytes(data: bytes, name: str) -> ParsedFile:
    """A file's bytes (JSON, gzip or zip) -> rows. Several records of one id: the newest `modified`."""
    chosen: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = {}
    for where, record in _records(data, name):
        advisory, affected = flatten_advisory(record, where)
        previous = chosen.get(advisory["advisory_id"])
        if previous is None or advisory["modified_at"] >= previous[0]["modified_at"]:
            chosen[advisory["advisory_id"]] = (advisory, affected)
    return ParsedFile(
        [a for a, _ in chosen.values()], [row for _, rows in chosen.values() for row in rows]
    )


def to_arrow(parsed: ParsedFile, extra_columns: list[str]) -> dict[str, pa.Table]:
    """Rows (already carrying the string columns `extra_columns`, e.g. source file, sha256 and
    ingest run) -> one Arrow table per raw table."""
    tables = {}
    for name, rows in (("advisories", parsed.advisories), ("affected", parsed.affected)):
        schema = SCHEMAS[name]
        for column in extra_columns:
            schema = schema.append(pa.field(column, pa.string()))
        tables[name] = pa.Table.from_pylist(rows, schema=schema)
    return tables
