"""The MSRC /updates index: one entry per month document with its release dates."""

from __future__ import annotations

import gzip
import json
from datetime import date
from typing import Any

from pipelines.sources.bulletins import text_value as _text
from pipelines.sources.bulletins import utc_timestamp
from pipelines.sources.msrc import KNOWN_EMPTY_DOCUMENTS, MARINER_TITLE, MsrcDocumentError


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

