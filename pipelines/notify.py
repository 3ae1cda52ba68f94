"""The notification webhook: a JSON POST with retries, and its Dagster resource.

The URL may carry a token (a query string, user info): it never appears in a message, a log line
or the run's configuration (the resource takes it from PATCHLEDGER_NOTIFY_WEBHOOK with
`dg.EnvVar`, resolved at launch).
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import urlsplit

import dagster as dg
import httpx
from pydantic import Field

WEBHOOK_TIMEOUT_SECONDS = 15.0
WEBHOOK_RETRIES = 3
WEBHOOK_BACKOFF_SECONDS = 2.0


class NotificationWebhook(dg.ConfigurableResource):
    """Where notices of new patches are POSTed (empty: recorded in the warehouse only) and how
    far back a patch counts as new."""

    url: str = Field(default="", description="Webhook URL (a secret: may hold a token).")
    lookback_days: int = Field(default=35, description="A patch released this many days before the as-of date is still new.")
    timeout_seconds: float = Field(default=WEBHOOK_TIMEOUT_SECONDS, description="Timeout of one POST.")
    retries: int = Field(default=WEBHOOK_RETRIES, description="Retries after a 5xx, 429 or transport error.")
    backoff_seconds: float = Field(default=WEBHOOK_BACKOFF_SECONDS, description="First wait between attempts (doubled each time).")
    deliver: bool = Field(
        default=True, description="False: notices are recorded in the warehouse, never POSTed (a past-date rebuild)."
    )

    def target(self) -> str:
        """The URL notices go to; empty when they are only recorded."""
        return self.url.strip() if self.deliver else ""

    def post(self, payload: dict[str, Any]) -> int:
        return post_webhook(self.target(), payload, timeout=self.timeout_seconds, retries=self.retries,
                            backoff_seconds=self.backoff_seconds)


class WebhookError(RuntimeError):
    """The notification webhook did not accept the notices (the URL in the message is redacted)."""


def redact_url(url: str) -> str:
    """scheme://host[:port]/path: no user info, query string or fragment (they may hold a token)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def post_webhook(
    url: str,
    payload: dict[str, Any],
    *,
    timeout: float = WEBHOOK_TIMEOUT_SECONDS,
    retries: int = WEBHOOK_RETRIES,
    backoff_seconds: float = WEBHOOK_BACKOFF_SECONDS,
    transport: httpx.BaseTransport | None = None,
) -> int:
    """POST the payload as JSON; retries 5xx, 429 and transport errors with exponential backoff.
    Returns the HTTP status. Errors never carry the URL's query string."""
    safe = redact_url(url)
    body = json.dumps(payload, sort_keys=True, default=str).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "patchledger-notify/1"}
    attempt = 0
    with httpx.Client(timeout=httpx.Timeout(timeout), transport=transport) as client:
        while True:
            try:
                response = client.post(url, content=body, headers=headers)
                if response.status_code < 300:
                    return response.status_code
                problem = f"HTTP {response.status_code}"
                retryable = response.status_code >= 500 or response.status_code == 429
            except httpx.HTTPError as exc:  # connect errors, timeouts; messages may embed the URL
                problem, retryable = type(exc).__name__, True
            attempt += 1
            if not retryable or attempt > retries:
                # `from None`: the httpx exception text can contain the full URL.
                raise WebhookError(
                    f"notification webhook {safe} failed after {attempt} attempt(s): {problem}"
                ) from None
            time.sleep(backoff_seconds * 2 ** (attempt - 1))
