"""The live OSV API: which advisories affect the estate's packages, and each one new or modified."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from urllib.parse import quote

from pipelines.connectors.http import ChannelClient, archive, write_atomic
from pipelines.sources.bulletins import utc_timestamp
from pipelines.sources.osv import BATCH_SIZE, URL_ENV, OsvAdvisoryError
from pipelines.sources.osv.reader import parse_bytes


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
