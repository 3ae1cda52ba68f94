"""The rollback-readiness policy: the age a recovery point may have at a production window's start."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml

from pipelines.ingest.errors import SourceFileError

DEFAULT_POLICY = Path(__file__).parents[2] / "config" / "rollback_readiness.yaml"


def load_rollback_policy(estate_dir: Path | None) -> pd.DataFrame:
    """One row per criticality (`default` for the rest): max_age_hours, pre_window_backup."""
    policy = yaml.safe_load(DEFAULT_POLICY.read_text(encoding="utf-8"))
    override = estate_dir / "policy" / "rollback_readiness.yaml" if estate_dir else None
    if override is not None and override.is_file():
        try:
            policy.update(yaml.safe_load(override.read_text(encoding="utf-8")) or {})
        except yaml.YAMLError as exc:
            raise SourceFileError(f"policy/rollback_readiness.yaml: not valid YAML: {exc}") from exc
    ages = policy.get("max_age_hours") or {}
    if "default" not in ages:
        raise SourceFileError("policy/rollback_readiness.yaml: field max_age_hours: needs a 'default'")
    for name, hours in ages.items():
        if not isinstance(hours, int | float) or hours <= 0:
            raise SourceFileError(f"policy/rollback_readiness.yaml: field max_age_hours.{name}: "
                                  f"{hours!r}: must be a positive number of hours")
    pre = {str(c).lower() for c in policy.get("pre_window_backup") or []}
    return pd.DataFrame(
        [(str(c).lower(), float(h), str(c).lower() in pre) for c, h in sorted(ages.items())],
        columns=["criticality", "max_age_hours", "pre_window_backup"],
    )
