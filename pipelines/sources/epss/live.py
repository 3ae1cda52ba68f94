"""The live EPSS service: the newest daily file by explicit date."""

from __future__ import annotations

import gzip
import tempfile
from datetime import date, timedelta
from pathlib import Path

import duckdb

from pipelines.connectors.http import ChannelClient, archive, write_atomic
from pipelines.sources.epss.reader import read_epss


def fetch_daily(client: ChannelClient, folder: Path, today: date, days_back: int = 3) -> Path | None:
    """The newest daily file by explicit date (the `-current` alias is unreliable): today, then
    up to `days_back` days earlier while the server answers 404. A day already in the folder is
    not fetched again (a daily file never changes). A new file is validated like an offline one,
    archived with its sha256 and written as epss_scores-YYYY-MM-DD.csv.gz. Returns it, or None."""
    for offset in range(days_back + 1):
        day = today - timedelta(days=offset)
        name = f"epss_scores-{day.isoformat()}.csv.gz"
        if (folder / name).exists():
            return None
        response = client.get(f"/{name}", accept=(404,))
        if response.status_code == 404:
            continue
        data = response.content
        if data[:2] != b"\x1f\x8b":  # served with Content-Encoding: gzip, already inflated
            data = gzip.compress(data, mtime=0)
        with tempfile.TemporaryDirectory() as scratch:
            incoming = Path(scratch) / name
            incoming.write_bytes(data)
            with duckdb.connect() as conn:
                read_epss(conn, incoming)  # a bad answer fails here, nothing written
        archive(folder / "archive", name.removesuffix(".csv.gz"), data, ".csv")
        write_atomic(folder / name, data)
        return folder / name
    return None
