"""The bulletin channels' configuration as Dagster resources, each set from its environment
variable with `dg.EnvVar` (resolved at launch, so a URL is never written into the run's config).

| resource key | class | environment (default) |
|---|---|---|
| `msrc_api` | `msrc.resource.MsrcResource` | PATCHLEDGER_MSRC_URL, PATCHLEDGER_MSRC_MONTHS (24), PATCHLEDGER_MSRC_MARINER (0) |
| `kev_feed`, `epss_feed`, `osv_api`, `vulnrichment_feed` | `ChannelEndpoint` | PATCHLEDGER_KEV_URL, PATCHLEDGER_EPSS_URL, PATCHLEDGER_OSV_URL, PATCHLEDGER_VULNRICHMENT_URL (the public services) |
| `bulletin_watch` | `BulletinWatch` | PATCHLEDGER_BULLETIN_CHANNELS (all five) |
| `notification_webhook` | `pipelines.notify.NotificationWebhook` | PATCHLEDGER_NOTIFY_WEBHOOK (none), PATCHLEDGER_NOTIFY_LOOKBACK_DAYS (35) |
"""

from __future__ import annotations

from typing import Any

import dagster as dg
from pydantic import Field

from pipelines.connectors.http import ChannelClient
from pipelines.resources import env_or

CHANNELS = ("msrc", "kev", "epss", "osv", "vulnrichment")


class ChannelEndpoint(dg.ConfigurableResource):
    """A bulletin service at its base URL (the public one, a mirror or a test server)."""

    base_url: str = Field(description="Base URL of the service.")

    def client(self, **options: Any) -> ChannelClient:
        """The shared HTTP client (timeouts, retries, Retry-After) at this base URL."""
        return ChannelClient(self.base_url.rstrip("/"), **options)


class BulletinWatch(dg.ConfigurableResource):
    """Which channels marts.bulletin_channels watches."""

    channels: str = Field(default="", description="Comma-separated channels; empty = all five.")

    def chosen(self) -> list[str]:
        chosen = [c.strip().lower() for c in self.channels.split(",") if c.strip()] or list(CHANNELS)
        unknown = sorted(set(chosen) - set(CHANNELS))
        if unknown:
            raise ValueError(f"PATCHLEDGER_BULLETIN_CHANNELS names unknown channels {unknown}; known: {CHANNELS}")
        return chosen


def bulletin_resources(deliver_notices: bool = True) -> dict[str, dg.ConfigurableResource]:
    """The bulletin resources as the environment configures them (see the table above);
    `deliver_notices=False` records notices without POSTing them (a past-date rebuild)."""
    from pipelines.notify import NotificationWebhook
    from pipelines.sources import epss, kev, msrc, osv, vulnrichment
    from pipelines.sources.msrc.resource import MsrcResource

    endpoints = {"kev_feed": kev, "epss_feed": epss, "osv_api": osv, "vulnrichment_feed": vulnrichment}
    return {
        "msrc_api": MsrcResource(
            base_url=env_or("PATCHLEDGER_MSRC_URL", msrc.DEFAULT_BASE_URL),
            months=env_or("PATCHLEDGER_MSRC_MONTHS", 24, int),
            mariner=env_or("PATCHLEDGER_MSRC_MARINER", "0"),
        ),
        **{
            name: ChannelEndpoint(base_url=env_or(module.URL_ENV, module.DEFAULT_BASE_URL))
            for name, module in endpoints.items()
        },
        "bulletin_watch": BulletinWatch(channels=env_or("PATCHLEDGER_BULLETIN_CHANNELS", "")),
        "notification_webhook": NotificationWebhook(
            url=env_or("PATCHLEDGER_NOTIFY_WEBHOOK", ""),
            lookback_days=env_or("PATCHLEDGER_NOTIFY_LOOKBACK_DAYS", 35, int),
            deliver=deliver_notices,
        ),
    }
