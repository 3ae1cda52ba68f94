"""The live KEV feed: the JSON catalog, fetched when it changed."""

from __future__ import annotations

import tempfile
from pathlib import Path

import duckdb

from pipelines.connectors.http import ChannelClient, Validators, archive, write_atomic
from pipelines.sources.kev import FEED_NAME, URL_ENV, KevFileError
from pipelines.sources.kev.reader import read_kev


def fetch_catalog(client: ChannelClient, folder: Path) -> Path | None:
    """GET the JSON feed (conditional on the previous answer's ETag / Last-Modified). A new
    catalog is validated like an offline file, archived with its sha256 and written as
    `known_exploited_vulnerabilities_<catalogVersion>.json`, one dated snapshot per version.
    Returns that file, or None when the server says nothing changed."""
    validators = Validators(folder / "archive")
    response = client.get_conditional(f"/{FEED_NAME}", validators)
    if response is None:
        return None
    data = response.content
    with tempfile.TemporaryDirectory() as scratch:
        incoming = Path(scratch) / f"{URL_ENV} {FEED_NAME}"
        incoming.write_bytes(data)
        with duckdb.connect() as conn:
            snapshot = read_kev(conn, incoming)  # a bad answer fails here, nothing written
    if not snapshot.num_rows:
        raise KevFileError(f"{URL_ENV} {FEED_NAME}: the catalog lists no vulnerabilities")
    version = snapshot.column("catalog_version")[0].as_py()
    archive(folder / "archive", f"known_exploited_vulnerabilities_{version}", data)
    target = folder / f"known_exploited_vulnerabilities_{version}.json"
    write_atomic(target, data)
    validators.remember(f"/{FEED_NAME}", response)
    return target
