"""MSRC Security Update Guide (CVRF API v3.0): one parser for the API JSON and the CVRF XML,
and a small live client.

Both forms carry the same document (data-sources.md 1.3): JSON wraps text in {"Value": ...} and
uses integer enums, XML uses namespaced elements and string enums. The XML is first turned into
the JSON shape (list containers unwrapped), then one flattener reads either, accepting a text or
{"Value"} wrapper, a scalar or a list, an integer or a string enum at every step.

Flattening (data-sources.md 1.7): one fix row per (CVE, affected ProductID, Vendor Fix
remediation naming that product); an affected product with no vendor fix still gets one row with
the remediation columns NULL, so no affected product is dropped.
"""

from __future__ import annotations

import gzip
import json
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa

from pipelines.connectors.http import ChannelClient, archive, base_url, sha256_bytes

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


# ---- tolerant accessors: JSON and XML-derived shapes alike ----


def _text(value: Any) -> str | None:
    """'x', {"Value": 'x'}, {} or None -> stripped text or None (a list: its first text)."""
    if isinstance(value, list):
        return next((t for t in (_text(v) for v in value) if t), None)
    if isinstance(value, dict):
        value = value.get("Value")
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _items(value: Any) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _ids(value: Any) -> list[str]:
    return [t for t in (_text(v) for v in _items(value)) if t]


def _enum(value: Any, names: dict[int, str]) -> str | None:
    """An enum as its XML string, whether the document gave the integer or the string."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return names.get(value, str(value))
    text = _text(value)
    if text is not None and text.isdigit():
        return names.get(int(text), text)
    return text


def _strict_enum(value: Any, names: dict[int, str], where: str) -> str | None:
    """As _enum, but a value outside the enumeration is an error naming the element and value."""
    if value is None or value == {}:
        return None
    known = _enum(value, names)
    if known not in names.values():
        raise MsrcDocumentError(
            f"{where}: unknown value {value!r} (known: {', '.join(names.values())})"
        )
    return known


def _float(value: Any, where: str) -> float | None:
    """A score: absent is NULL, anything that is not a number is an error naming the element."""
    if isinstance(value, bool):
        raise MsrcDocumentError(f"{where}: {value!r} is not a number")
    text = _text(value)
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        raise MsrcDocumentError(f"{where}: {text!r} is not a number") from None


def kb_digits(value: Any) -> str | None:
    """'KB5034127', ' 5034127 ' -> '5034127'; anything that is not a KB number -> None."""
    text = _text(value)
    if text is None:
        return None
    digits = re.sub(r"^KB", "", text.strip(), flags=re.IGNORECASE)
    return digits if digits.isdigit() else None


def split_supersedence(value: Any) -> list[str]:
    """'5077181; 5077212', 'KB1,KB2' -> ['5077181', '5077212'] (sorted, unique)."""
    text = _text(value)
    if not text:
        return []
    return sorted({d for d in (kb_digits(p) for p in re.split(r"[;,\s]+", text)) if d})


def utc_timestamp(value: Any) -> datetime | None:
    """ISO-8601 with or without a zone (no zone = UTC, as MSRC documents write it)."""
    text = _text(value)
    if not text:
        return None
    text = re.sub(r"(\.\d{6})\d+", r"\1", text.replace("Z", "+00:00"))
    parsed = datetime.fromisoformat(text)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def parse_exploit_status(value: Any) -> dict[str, Any]:
    """'Publicly Disclosed:No;Exploited:Yes;Latest Software Release:...;DOS:N/A;' -> fields.

    Split on ';' then on the first ':'; keys may be missing, a trailing ';' may occur.
    """
    raw = _text(value)
    pairs: dict[str, str] = {}
    for part in (raw or "").split(";"):
        name, sep, val = part.partition(":")
        if sep and name.strip():
            pairs[name.strip().lower()] = val.strip()

    def yes_no(name: str) -> bool | None:
        val = pairs.get(name, "").lower()
        return True if val == "yes" else False if val == "no" else None

    def text(name: str) -> str | None:
        val = pairs.get(name)
        return val if val and val.upper() != "N/A" else None

    return {
        "publicly_disclosed": yes_no("publicly disclosed"),
        "exploited": yes_no("exploited"),
        "latest_release_exploitability": text("latest software release"),
        "older_release_exploitability": text("older software release"),
        "exploit_status_raw": raw,
    }


def document_release_month(document_id: str, title: str | None) -> tuple[str, date | None]:
    """(document_kind, release_month), checking the title against the id.

    Raises MsrcDocumentError for an unrecognised id or a title naming another month (MSRC has
    served the February title under 2026-Jan, issue #178).
    """
    if title == MARINER_TITLE:
        # Mariner pseudo-documents carry fake pre-2016 ids: their "month" is not a release month.
        return "mariner_release_notes", None
    match = _DOCUMENT_ID.match(document_id)
    if not match or match.group(2).lower() not in _MONTH_ABBR:
        raise MsrcDocumentError(f"unrecognised MSRC document id {document_id!r}")
    year, month = int(match.group(1)), _MONTH_ABBR[match.group(2).lower()]
    expected = rf"\b{MONTHS[month - 1]}\b.*\b{year}\b"
    if not title or not re.search(expected, title, flags=re.IGNORECASE):
        raise MsrcDocumentError(
            f"document {document_id!r} is titled {title!r}, not '{MONTHS[month - 1]} {year} ...': "
            "MSRC served the wrong month; keeping the previously ingested rows"
        )
    return "security_update", date(year, month, 1)


# ---- reading a file ----


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def xml_to_json_shape(element: ET.Element) -> Any:
    """A CVRF XML element in the JSON API's shape (enums stay strings)."""
    name = _local(element.tag)
    children = list(element)
    if name in _XML_LISTS:
        return [xml_to_json_shape(child) for child in children]
    obj: dict[str, Any] = dict(element.attrib)
    text = (element.text or "").strip()
    if text and not children:
        obj["Value"] = element.text
    for child in children:
        child_name = _local(child.tag)
        value = xml_to_json_shape(child)
        if child_name in obj:
            previous = obj[child_name]
            obj[child_name] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            obj[child_name] = value
    return obj


def _namespace(tag: str) -> str:
    return tag[1:].split("}", 1)[0] if tag.startswith("{") else ""


def _check_namespaces(root: ET.Element) -> None:
    """The root is cvrf:cvrfdoc and every element is in a CVRF 1.1 namespace."""
    if root.tag != f"{{{CVRF_NAMESPACE}}}cvrfdoc":
        raise MsrcDocumentError(
            f"root element {_local(root.tag)!r} in namespace {_namespace(root.tag)!r} is not a "
            f"CVRF 1.1 document ({{{CVRF_NAMESPACE}}}cvrfdoc)"
        )
    for element in root.iter():
        if _namespace(element.tag) not in XML_NAMESPACES:
            raise MsrcDocumentError(
                f"element {_local(element.tag)!r} is in namespace {_namespace(element.tag)!r}, "
                "not a CVRF 1.1 namespace"
            )


def load_document(data: bytes) -> tuple[dict[str, Any], str]:
    """Bytes of a month document (JSON or XML, plain or gzip) -> (JSON-shaped dict, format)."""
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    head = data.lstrip()[:1]
    if head == b"<":
        root = ET.fromstring(data)
        _check_namespaces(root)
        return xml_to_json_shape(root), "xml"
    if head == b"{":
        return json.loads(data), "json"
    raise MsrcDocumentError("neither a CVRF XML nor a CVRF JSON document")


# ---- flattening ----


def _products(tree: Any) -> Iterable[tuple[dict, str | None]]:
    """Every FullProductName under ProductTree (root list and nested branches) with its family."""

    def walk(node: Any, family: str | None, depth: int) -> Iterable[tuple[dict, str | None]]:
        for item in _items(node):
            if not isinstance(item, dict):
                continue
            if "ProductID" in item and not isinstance(item.get("ProductID"), list):
                yield item, family
                continue
            name = _text(item.get("Name"))
            inner_family = name if depth >= 1 and name else family
            for key in ("Branch", "Items", "FullProductName"):
                yield from walk(item.get(key), inner_family, depth + 1)

    tree = tree or {}
    yield from walk(tree.get("Branch"), None, 0)
    yield from walk(tree.get("FullProductName"), None, 0)


def flatten_document(doc: dict[str, Any], source_format: str = "json") -> ParsedDocument:
    """One CVRF month document -> rows for the four raw tables."""
    tracking = doc.get("DocumentTracking") or {}
    identification = tracking.get("Identification") or {}
    document_id = _text(identification.get("ID"))
    if not document_id:
        raise MsrcDocumentError("document has no DocumentTracking.Identification.ID")
    title = _text(doc.get("DocumentTitle"))
    kind, release_month = document_release_month(document_id, title)
    current = utc_timestamp(tracking.get("CurrentReleaseDate"))
    if current is None:
        raise MsrcDocumentError(f"document {document_id!r} has no CurrentReleaseDate")

    products: dict[str, dict[str, Any]] = {}
    for item, family in _products(doc.get("ProductTree")):
        product_id = _text(item.get("ProductID"))
        # Products appear both inside branches and at the root: the branch one (with its
        # family) is read first and wins.
        if product_id and product_id not in products:
            products[product_id] = {
                "document_id": document_id,
                "product_id": product_id,
                "product_name": _text(item),
                "product_family": family,
                "cpe": _text(item.get("CPE")),
            }

    vulnerabilities: list[dict[str, Any]] = []
    fixes: list[dict[str, Any]] = []
    for vuln in _items(doc.get("Vulnerability")):
        cve = (_text(vuln.get("CVE")) or "").upper()
        if not cve:
            raise MsrcDocumentError(f"document {document_id!r}: a vulnerability has no CVE")
        if any(v["cve"] == cve for v in vulnerabilities):
            raise MsrcDocumentError(
                f"document {document_id!r}, Vulnerability {cve}: listed more than once"
            )
        vuln_row, vuln_fixes = _flatten_vulnerability(document_id, cve, vuln, f"document {document_id!r}, Vulnerability {cve}")
        vulnerabilities.append(vuln_row)
        fixes.extend(vuln_fixes)

    if not vulnerabilities and document_id not in KNOWN_EMPTY_DOCUMENTS:
        raise MsrcDocumentError(
            f"document {document_id!r} has no vulnerabilities: MSRC served an empty month; "
            "keeping the previously ingested rows"
        )

    revisions = [_text(r.get("Number")) for r in _items(tracking.get("RevisionHistory"))]
    revision = max((r for r in revisions if r), key=_revision_sort_key, default=None)
    documents = [
        {
            "document_id": document_id,
            "alias": _text(identification.get("Alias")),
            "title": title,
            "document_type": _text(doc.get("DocumentType")),
            "document_kind": kind,
            "release_month": release_month,
            "document_status": _strict_enum(
                tracking.get("Status"), DOCUMENT_STATUSES, f"document {document_id!r}, DocumentTracking.Status"
            ),
            "version": _text(tracking.get("Version")),
            "revision": revision,
            "initial_release_at": utc_timestamp(tracking.get("InitialReleaseDate")),
            "current_release_at": current,
            "vulnerability_count": len(vulnerabilities),
            "product_count": len(products),
            "source_format": source_format,
        }
    ]
    return ParsedDocument(
        document_id,
        current,
        {
            "documents": documents,
            "products": list(products.values()),
            "vulnerabilities": vulnerabilities,
            "fixes": fixes,
        },
    )


def _revision_sort_key(number: str) -> tuple[int, ...]:
    return tuple(int(p) if p.isdigit() else -1 for p in number.split("."))


def _flatten_vulnerability(
    document_id: str, cve: str, vuln: dict[str, Any], where: str
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    severity: dict[str, str | None] = {}
    impact: dict[str, str | None] = {}
    exploit_status = None
    for n, threat in enumerate(_items(vuln.get("Threats"))):
        kind = _strict_enum(threat.get("Type"), THREAT_TYPES, f"{where}, Threats[{n}].Type")
        if kind == "Exploit Status":
            exploit_status = threat.get("Description")
            continue
        target = severity if kind == "Severity" else impact if kind == "Impact" else None
        if target is not None:
            for product_id in _ids(threat.get("ProductID")):
                target.setdefault(product_id, _text(threat.get("Description")))

    cvss: dict[str, dict[str, Any]] = {}
    for n, score in enumerate(_items(vuln.get("CVSSScoreSets"))):
        checked = {
            **score,
            "BaseScore": _float(score.get("BaseScore"), f"{where}, CVSSScoreSets[{n}].BaseScore"),
            "TemporalScore": _float(score.get("TemporalScore"), f"{where}, CVSSScoreSets[{n}].TemporalScore"),
        }
        for product_id in _ids(score.get("ProductID")):
            cvss.setdefault(product_id, checked)  # the first score set naming the product wins

    vendor_fixes: dict[str, list[dict[str, Any]]] = {}
    for n, remediation in enumerate(_items(vuln.get("Remediations"))):
        kind = _strict_enum(remediation.get("Type"), REMEDIATION_TYPES, f"{where}, Remediations[{n}].Type")
        if kind != "Vendor Fix":
            continue
        description = _text(remediation.get("Description"))
        supersedence = _text(remediation.get("Supercedence") or remediation.get("Supersedence"))
        fix = {
            "remediation_type": "Vendor Fix",
            "kb": kb_digits(description),
            "fix_description": description,
            "supersedes": split_supersedence(supersedence),
            "supersedence_raw": supersedence,
            "restart_required": _text(remediation.get("RestartRequired")),
            "sub_type": _text(remediation.get("SubType")),
            "fixed_build": _text(remediation.get("FixedBuild")),
            "remediation_url": _text(remediation.get("URL")),
        }
        for product_id in _ids(remediation.get("ProductID")):
            vendor_fixes.setdefault(product_id, []).append(fix)

    affected: list[str] = []
    for status in _items(vuln.get("ProductStatuses")):
        for product_id in _ids(status.get("ProductID")):
            if product_id not in affected:
                affected.append(product_id)

    no_fix = dict.fromkeys(FIXES_SCHEMA.names[8:])
    rows = []
    for product_id in affected:
        score = cvss.get(product_id, {})
        base = {
            "document_id": document_id,
            "cve": cve,
            "product_id": product_id,
            "severity": severity.get(product_id),
            "impact": impact.get(product_id),
            "cvss_base": score.get("BaseScore"),
            "cvss_temporal": score.get("TemporalScore"),
            "cvss_vector": _text(score.get("Vector")),
        }
        for fix in vendor_fixes.get(product_id) or [no_fix]:
            rows.append({**base, **fix})

    notes = _items(vuln.get("Notes"))
    for n, note in enumerate(notes):
        _strict_enum(note.get("Type"), NOTE_TYPES, f"{where}, Notes[{n}].Type")

    def notes_of(kind: str, title: str | None = None) -> list[str]:
        return [
            text
            for note in notes
            if _enum(note.get("Type"), NOTE_TYPES) == kind
            and (title is None or _text(note.get("Title")) == title)
            and (text := _text(note))
        ]

    action = notes_of("Other", "Customer Action Required")
    vuln_row = {
        "document_id": document_id,
        "cve": cve,
        "title": _text(vuln.get("Title")),
        **parse_exploit_status(exploit_status),
        "cwes": sorted({c for c in (_text(w.get("ID")) for w in _items(vuln.get("CWE"))) if c}),
        "tags": notes_of("Tag"),
        "cna": next(iter(notes_of("CNA")), None),
        # The MSRC module reads a missing note as "Yes".
        "customer_action_required": (action[0].lower() != "no") if action else True,
    }
    return vuln_row, rows


def parse_bytes(data: bytes) -> ParsedDocument:
    doc, source_format = load_document(data)
    return flatten_document(doc, source_format)


def parse_file(path: Path) -> ParsedDocument:
    """Parse one month file; errors name the file."""
    try:
        return parse_bytes(path.read_bytes())
    except (MsrcDocumentError, ValueError, ET.ParseError) as exc:
        raise MsrcDocumentError(f"{path.name}: {exc}") from exc


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


def parse_index(data: bytes) -> list[dict[str, Any]]:
    """The /updates body ({"value": [...]} or a bare list, plain or gzip) -> index entries."""
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    body = json.loads(data)
    entries = body.get("value") if isinstance(body, dict) else body
    if not isinstance(entries, list):
        raise MsrcDocumentError("the /updates index has no 'value' list")
    return [e for e in entries if isinstance(e, dict)]


def index_rows(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Index entries -> rows of INDEX_SCHEMA (dates to UTC); entries without an ID are dropped."""
    return [
        {
            "document_id": _text(e.get("ID")),
            "alias": _text(e.get("Alias")),
            "document_title": _text(e.get("DocumentTitle")),
            "severity": _text(e.get("Severity")),
            "initial_release_at": utc_timestamp(e.get("InitialReleaseDate")),
            "current_release_at": utc_timestamp(e.get("CurrentReleaseDate")),
            "cvrf_url": _text(e.get("CvrfUrl")),
        }
        for e in entries
        if _text(e.get("ID"))
    ]


def scoped_index(
    index: list[dict[str, Any]], *, since: date | None = None, include_mariner: bool = True
) -> list[dict[str, Any]]:
    """The entries a live ingest fetches: released since `since` (InitialReleaseDate), Mariner
    pseudo-months only when asked, never the months MSRC publishes empty."""
    kept = []
    for entry in index:
        if entry.get("ID") in KNOWN_EMPTY_DOCUMENTS:
            continue
        if not include_mariner and entry.get("DocumentTitle") == MARINER_TITLE:
            continue
        released = utc_timestamp(entry.get("InitialReleaseDate"))
        if since is not None and released is not None and released.date() < since:
            continue
        kept.append(entry)
    return kept


def to_arrow(parsed: list[ParsedDocument], extra: list[dict[str, Any]]) -> dict[str, pa.Table]:
    """Rows of several documents -> one Arrow table per raw table, with the per-document
    `extra` columns (source file, sha256, ingest run) appended."""
    tables = {}
    for name, schema in SCHEMAS.items():
        rows = [
            {**row, **more} for doc, more in zip(parsed, extra, strict=True) for row in doc.rows[name]
        ]
        full = schema.append(pa.field("source_file", pa.string()))
        full = full.append(pa.field("source_sha256", pa.string()))
        full = full.append(pa.field("ingest_run", pa.string()))
        tables[name] = pa.Table.from_pylist(rows, schema=full)
    return tables


# ---- live client ----


@dataclass
class FetchedDocument:
    document_id: str
    data: bytes
    sha256: str
    parsed: ParsedDocument


class MsrcClient:
    """GET /updates and /cvrf/{id} through the shared channel client (timeouts, retries on 5xx,
    429 and timeouts, Retry-After honoured)."""

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 60.0,
        retries: int = 4,
        backoff_seconds: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client = ChannelClient(
            base_url,
            transport=transport,
            timeout=timeout,
            retries=retries,
            backoff_seconds=backoff_seconds,
            sleep=sleep,
            headers={"Accept": "application/json"},  # without it /cvrf/{id} answers XML
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> MsrcClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _get(self, path: str) -> httpx.Response:
        return self._client.get(path)

    def index(self) -> list[dict[str, Any]]:
        """The /updates index (one entry per document); OData $filter is not used (issue #108)."""
        return list(self._get("/updates").json().get("value") or [])

    def index_bytes(self) -> bytes:
        """The /updates body as received (to archive it as updates.json)."""
        return self._get("/updates").content

    def document(self, document_id: str) -> FetchedDocument:
        data = self._get(f"/cvrf/{document_id}").content
        try:
            parsed = parse_bytes(data)
        except (ValueError, ET.ParseError) as exc:
            raise MsrcDocumentError(f"MSRC /cvrf/{document_id}: {exc}") from exc
        if parsed.document_id.lower() != document_id.lower():
            raise MsrcDocumentError(
                f"MSRC /cvrf/{document_id} returned document {parsed.document_id!r}"
            )
        return FetchedDocument(document_id, data, sha256_bytes(data), parsed)


def client_from_env(**options: Any) -> MsrcClient:
    """The live client, at PATCHLEDGER_MSRC_URL when set (a mirror or a test server)."""
    return MsrcClient(base_url("PATCHLEDGER_MSRC_URL", DEFAULT_BASE_URL), **options)


def changed_documents(
    index: list[dict[str, Any]], known: dict[str, datetime], *, include_mariner: bool = True
) -> list[str]:
    """Ids whose CurrentReleaseDate is newer than the one already ingested (or new ids)."""
    ids = []
    for entry in index:
        document_id = entry.get("ID")
        if not document_id or document_id in KNOWN_EMPTY_DOCUMENTS:
            continue
        if not include_mariner and entry.get("DocumentTitle") == MARINER_TITLE:
            continue
        current = utc_timestamp(entry.get("CurrentReleaseDate"))
        seen = known.get(document_id)
        if seen is None or (current is not None and current > seen):
            ids.append(document_id)
    return sorted(ids)


def fetch_changed(
    client: MsrcClient,
    known: dict[str, datetime],
    archive_dir: Path,
    *,
    since: date | None = None,
    include_mariner: bool = True,
) -> list[FetchedDocument]:
    """Fetch every changed document, archive each (gzip, named by id and sha256) and write
    `<archive_dir>/../<id>.json` as the current copy. Raises on an empty or mis-titled month
    before anything is written, so the previous files and rows stay."""
    index = client.index()
    if since is not None:
        index = [
            e
            for e in index
            if (ts := utc_timestamp(e.get("InitialReleaseDate"))) is None or ts.date() >= since
        ]
    fetched = [client.document(i) for i in changed_documents(index, known, include_mariner=include_mariner)]
    archive_dir.mkdir(parents=True, exist_ok=True)
    for doc in fetched:
        archive(archive_dir, doc.document_id, doc.data)
        (archive_dir.parent / f"{doc.document_id}.json").write_bytes(doc.data)
    return fetched
