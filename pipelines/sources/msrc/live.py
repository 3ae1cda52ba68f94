"""The live MSRC client: GET /updates and /cvrf/{id}, archive what changed."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import httpx

from pipelines.connectors.http import ChannelClient, archive, sha256_bytes
from pipelines.sources.bulletins import utc_timestamp
from pipelines.sources.msrc import DEFAULT_BASE_URL, MsrcDocumentError, ParsedDocument
from pipelines.sources.msrc.index import scoped_index
from pipelines.sources.msrc.parser import parse_bytes


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


def changed_documents(
    index: list[dict[str, Any]], known: dict[str, datetime], *, include_mariner: bool = True
) -> list[str]:
    """Ids in scope (scoped_index) whose CurrentReleaseDate is newer than the one already
    ingested (or new ids)."""
    ids = []
    for entry in scoped_index(index, include_mariner=include_mariner):
        document_id = entry.get("ID")
        if not document_id:
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
    index = scoped_index(client.index(), since=since)
    fetched = [client.document(i) for i in changed_documents(index, known, include_mariner=include_mariner)]
    archive_dir.mkdir(parents=True, exist_ok=True)
    for doc in fetched:
        archive(archive_dir, doc.document_id, doc.data)
        (archive_dir.parent / f"{doc.document_id}.json").write_bytes(doc.data)
    return fetched
