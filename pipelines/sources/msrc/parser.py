"""MSRC CVRF month documents -> rows: one parser for the API JSON and the CVRF XML.

The XML is first turned into the JSON shape (list containers unwrapped), then one flattener reads
either, accepting a text or {"Value"} wrapper, a scalar or a list, an integer or a string enum at
every step.
"""

from __future__ import annotations

import gzip
import json
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa

from pipelines.sources.bulletins import utc_timestamp
from pipelines.sources.msrc import (
    _XML_LISTS,
    CVRF_NAMESPACE,
    DOCUMENT_STATUSES,
    FIXES_SCHEMA,
    KNOWN_EMPTY_DOCUMENTS,
    NOTE_TYPES,
    REMEDIATION_TYPES,
    SCHEMAS,
    THREAT_TYPES,
    XML_NAMESPACES,
    MsrcDocumentError,
    ParsedDocument,
)
from pipelines.sources.msrc.values import (
    _enum,
    _float,
    _ids,
    _items,
    _strict_enum,
    _text,
    document_release_month,
    kb_digits,
    parse_exploit_status,
    split_supersedence,
)

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

