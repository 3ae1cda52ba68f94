"""The live Vulnrichment repository: one conditional GET per CVE record."""

from __future__ import annotations

from pathlib import Path

from pipelines.connectors.http import ChannelClient, Validators, archive, write_atomic
from pipelines.sources.vulnrichment import _CVE, URL_ENV, record_path
from pipelines.sources.vulnrichment.reader import parse_record


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
