"""The SLA policy as data: project defaults, overridable from the estate's policy/sla.yaml."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import yaml

DEFAULT_POLICY = Path(__file__).parent / "config" / "sla.yaml"
CLOCKS = {"release", "detect", "kev_due"}
SEVERITIES = ("Critical", "Important", "Moderate", "Low")


class PolicyError(ValueError):
    pass


def load_policy(estate_dir: Path | None) -> dict:
    """The default policy with the estate's overrides applied, validated."""
    policy = yaml.safe_load(DEFAULT_POLICY.read_text(encoding="utf-8"))
    override_file = (estate_dir / "policy" / "sla.yaml") if estate_dir else None
    if override_file and override_file.exists():
        try:
            override = yaml.safe_load(override_file.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise PolicyError(f"{override_file}: not valid YAML: {exc}") from exc
        policy["version"] = override.get("version", f"{policy['version']}+estate")
        policy["frameworks"].update(override.get("frameworks") or {})
    _validate(policy, override_file)
    return policy


def _validate(policy: dict, source: Path | None) -> None:
    where = str(source or DEFAULT_POLICY)
    for name, rule in policy["frameworks"].items():
        if rule.get("clock") not in CLOCKS:
            raise PolicyError(f"{where}: frameworks.{name}.clock must be one of {sorted(CLOCKS)}")
        for unit in ("days", "months"):
            for severity, value in (rule.get(unit) or {}).items():
                if severity not in SEVERITIES:
                    raise PolicyError(f"{where}: frameworks.{name}.{unit}: unknown severity {severity!r}")
                if not isinstance(value, int) or value < 0:
                    raise PolicyError(f"{where}: frameworks.{name}.{unit}.{severity} must be a whole number >= 0")


def policy_rows(policy: dict) -> pd.DataFrame:
    """One row per framework and severity: what the gap SQL joins to."""
    rows = []
    for name, rule in sorted(policy["frameworks"].items()):
        base = {
            "framework": name,
            "title": rule.get("title", name),
            "clause": rule.get("clause", ""),
            "clock": rule["clock"],
            "scope": rule.get("scope", "all"),
            "policy_version": policy["version"],
        }
        if rule["clock"] == "kev_due":
            rows.append({**base, "severity": None, "days": None, "months": None})
        for severity in SEVERITIES:
            days = (rule.get("days") or {}).get(severity)
            months = (rule.get("months") or {}).get(severity)
            if days is not None or months is not None:
                rows.append({**base, "severity": severity, "days": days, "months": months})
    frame = pd.DataFrame(rows, columns=[
        "framework", "title", "clause", "clock", "scope", "policy_version", "severity", "days", "months",
    ])
    return frame.astype({"days": "Int32", "months": "Int32"})


def policy_sha256(policy: dict) -> str:
    return hashlib.sha256(json.dumps(policy, sort_keys=True).encode()).hexdigest()
