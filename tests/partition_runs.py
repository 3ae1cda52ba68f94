"""Runs of day-partitioned assets in tests name their days, as `patchledger run` does: a run
that names none would be an unpartitioned run, which the code location never launches."""

from __future__ import annotations

import dagster as dg

from pipelines.partitions import every_day


def materialize_every_day(assets, **kwargs) -> dg.ExecuteInProcessResult:
    """`dg.materialize` over every daily partition (a full run), beside the caller's tags."""
    return dg.materialize(assets, **{**kwargs, "tags": {**every_day(), **(kwargs.get("tags") or {})}})
