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
"""

from __future__ import annotations

import gzip
import io
import json
import re
import zipfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pyarrow as pa
from cvss import CVSS2, CVSS3, CVSS4, CVSSError

from pipelines.connectors.http import ChannelClient, archive, base_url, write_atomic
from pipelines.connectors.msrc import utc_timestamp

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


# ---- live client (https://google.github.io/osv.dev/api/) ----

DEFAULT_BASE_URL = "https://api.osv.dev"
URL_ENV = "PATCHLEDGER_OSV_URL"
BATCH_SIZE = 1000  # /v1/querybatch accepts at most 1,000 queries


def client_from_env(**options: Any) -> ChannelClient:
    return ChannelClient(base_url(URL_ENV, DEFAULT_BASE_URL), **options)


def query_ids(client: ChannelClient, packages: list[tuple[str, str]]) -> dict[str, datetime | None]:
    """POST /v1/querybatch for every (ecosystem, package): the ids of the advisories that affect
    the package, with their `modified`; a result with next_page_token is asked again."""
    found: dict[str, datetime | None] = {}
    queries = [{"package": {"ecosystem": e, "name": n}} for e, n in sorted(set(packages))]
    for start in range(0, len(queries), BATCH_SIZE):
        batch = queries[start : start + BATCH_SIZE]
        while batch:
            body = client.post_json("/v1/querybatch", {"queries": batch}).json()
            results = body.get("results") if isinstance(body, dict) else None
            if not isinstance(results, list) or len(results) != len(batch):
                raise OsvAdvisoryError(
                    f"{URL_ENV} /v1/querybatch: 'results' must list one result per query ({len(batch)})"
                )
            following = []
            for query, result in zip(batch, results, strict=True):
                for vuln in (result or {}).get("vulns") or []:
                    try:
                        modified = utc_timestamp(vuln.get("modified"))
                    except ValueError as exc:
                        raise OsvAdvisoryError(f"{URL_ENV} /v1/querybatch: {vuln.get('id')}: modified: {exc}") from exc
                    found[str(vuln["id"])] = max(filter(None, (found.get(str(vuln["id"])), modified)), default=None)
                if (result or {}).get("next_page_token"):
                    following.append({**query, "page_token": result["next_page_token"]})
            batch = following
    return found


def fetch_advisories(
    client: ChannelClient,
    packages: list[tuple[str, str]],
    known: dict[str, datetime],
    folder: Path,
) -> dict[str, int]:
    """The advisories affecting the estate's packages that are new or modified since the ingested
    copy: GET /v1/vulns/{id}, validated, archived with its sha256 and written as
    `<folder>/osv.dev/<id>.json`. Returns counts: listed, fetched, unchanged."""
    listed = query_ids(client, packages)
    counts = {"listed": len(listed), "fetched": 0, "unchanged": 0}
    for advisory_id, modified in sorted(listed.items()):
        seen = known.get(advisory_id)
        if seen is not None and modified is not None and modified <= seen:
            counts["unchanged"] += 1
            continue
        data = client.get(f"/v1/vulns/{quote(advisory_id, safe='')}").content
        parse_bytes(data, f"{URL_ENV} /v1/vulns/{advisory_id}")  # fails before anything is written
        archive(folder / "archive", advisory_id, data)
        write_atomic(folder / "osv.dev" / f"{advisory_id}.json", data)
        counts["fetched"] += 1
    return counts
