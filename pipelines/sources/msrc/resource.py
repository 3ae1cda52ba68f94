"""The MSRC API as a Dagster resource: where it is and what a live ingest fetches."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import dagster as dg
from pydantic import Field

from pipelines.sources.msrc import DEFAULT_BASE_URL
from pipelines.sources.msrc.live import MsrcClient


class MsrcResource(dg.ConfigurableResource):
    """The MSRC CVRF API: base URL and the ingest scope (the months first released in the last
    `months` months, plus the Mariner pseudo-months when `mariner` is "1")."""

    base_url: str = Field(default=DEFAULT_BASE_URL, description="CVRF API v3.0 base URL.")
    months: int = Field(default=24, description="Months of MSRC documents in scope.")
    mariner: str = Field(default="0", description='"1" fetches the Mariner release notes too.')

    def client(self, **options: Any) -> MsrcClient:
        return MsrcClient(self.base_url.rstrip("/"), **options)

    def since(self, today: date) -> date:
        """The first day in scope."""
        return today - timedelta(days=31 * self.months)

    def include_mariner(self) -> bool:
        return self.mariner.strip() == "1"
