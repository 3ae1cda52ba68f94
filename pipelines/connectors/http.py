"""The HTTP client every bulletin channel shares (MSRC, KEV, EPSS, OSV, Vulnrichment).

httpx with timeouts; retries on 429, 5xx and transport errors, waiting what the server asks in
`Retry-After` (seconds or an HTTP date, capped) and otherwise backing off exponentially;
conditional requests (`If-None-Match` / `If-Modified-Since` from the validators of the previous
answer, kept in a small JSON file beside the archive); and the archive of raw answers in the
estate, gzip-compressed and named by their sha256, so every live fetch can be replayed offline.
"""

from __future__ import annotations

import email.utils
import gzip
import hashlib
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_RETRY_AFTER_SECONDS = 300.0


class ChannelHttpError(RuntimeError):
    """A bulletin server did not answer usably after the retries (the message names the URL)."""


def retry_after_seconds(value: str | None, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> float | None:
    """`Retry-After: 120` or `Retry-After: Wed, 21 Oct 2015 07:28:00 GMT` -> seconds to wait."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now()).total_seconds())


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ChannelClient:
    """GET / POST against one base URL with timeouts and retries."""

    def __init__(
        self,
        base: str,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 60.0,
        retries: int = 4,
        backoff_seconds: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
        headers: dict[str, str] | None = None,
    ) -> None:
        self._client = httpx.Client(
            base_url=base.rstrip("/"),
            transport=transport,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 15.0)),
            headers={"User-Agent": "patchledger/1", **(headers or {})},
            follow_redirects=True,
        )
        self._retries = retries
        self._backoff = backoff_seconds
        self._sleep = sleep

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> ChannelClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        accept: tuple[int, ...] = (),
        headers: dict[str, str] | None = None,
        json_body: Any = None,
    ) -> httpx.Response:
        """The response: a 2xx, or a status in `accept` (304, 404, ...); anything else raises
        (after the retries for 429, 5xx and transport errors)."""
        attempt = 0
        while True:
            wait = None
            try:
                response = self._client.request(method, path, headers=headers, json=json_body)
                if response.status_code not in RETRY_STATUSES:
                    if response.status_code in accept:
                        return response
                    response.raise_for_status()
                    return response
                failure: Exception = httpx.HTTPStatusError(
                    f"{response.status_code} from {response.request.url}",
                    request=response.request,
                    response=response,
                )
                wait = retry_after_seconds(response.headers.get("Retry-After"))
            except httpx.TransportError as exc:  # timeouts, connection resets
                failure = exc
            attempt += 1
            if attempt > self._retries:
                raise failure
            if wait is None:
                wait = self._backoff * 2 ** (attempt - 1)
            self._sleep(min(wait, MAX_RETRY_AFTER_SECONDS))

    def get(self, path: str, **options: Any) -> httpx.Response:
        return self.request("GET", path, **options)

    def post_json(self, path: str, body: Any, **options: Any) -> httpx.Response:
        return self.request("POST", path, json_body=body, **options)

    def get_conditional(self, path: str, validators: Validators) -> httpx.Response | None:
        """GET with the validators of the previous answer; None when the server says 304 (not
        changed). The new validators are remembered only by `validators.remember` after the
        caller has stored the body."""
        response = self.get(path, accept=(304,), headers=validators.headers(path))
        return None if response.status_code == 304 else response


class Validators:
    """ETag / Last-Modified per path, kept in `<archive>/http_validators.json`."""

    def __init__(self, archive_dir: Path) -> None:
        self.path = archive_dir / "http_validators.json"
        self._known: dict[str, dict[str, str]] = (
            json.loads(self.path.read_text(encoding="utf-8")) if self.path.is_file() else {}
        )

    def headers(self, path: str) -> dict[str, str]:
        known = self._known.get(path, {})
        out = {}
        if known.get("etag"):
            out["If-None-Match"] = known["etag"]
        if known.get("last_modified"):
            out["If-Modified-Since"] = known["last_modified"]
        return out

    def remember(self, path: str, response: httpx.Response) -> None:
        entry = {
            k: v
            for k, v in (("etag", response.headers.get("ETag")), ("last_modified", response.headers.get("Last-Modified")))
            if v
        }
        if not entry:
            return
        self._known[path] = entry
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self._known, indent=1, sort_keys=True), encoding="utf-8")


def archive(archive_dir: Path, stem: str, data: bytes, suffix: str = ".json") -> tuple[Path, str]:
    """Keep a raw answer as `<archive_dir>/<stem>_<sha256[:16]><suffix>.gz` (gzip without a
    timestamp, so the same answer gives the same file; an answer that is gzip already is kept as
    it came); returns (path, sha256 of the answer)."""
    sha = sha256_bytes(data)
    archive_dir.mkdir(parents=True, exist_ok=True)
    path = archive_dir / f"{stem}_{sha[:16]}{suffix}.gz"
    if not path.exists():
        path.write_bytes(data if data[:2] == b"\x1f\x8b" else gzip.compress(data, mtime=0))
    return path, sha


def write_atomic(path: Path, data: bytes) -> None:
    """Replace a file in one rename, so a reader never sees half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(data)
    partial.replace(path)
