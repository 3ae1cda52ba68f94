"""The SLA policy as data: project defaults, overridable from the estate's policy/sla.yaml."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import yaml

DEFAULT_POLICY = Path(__file__).parent / "config" / "sla.yaml"
CLOCKS = {"release", "detect", "kev_due", "kev_added_or_detect"}
SEVERITIES = ("Critical", "Important", "Moderate", "Low")
# Decision-table frameworks (CISA BOD 26-04): four binary inputs -> days, or fix on next upgrade.
DECISION_CLOCK = "kev_added_or_detect"
DECISION_INPUTS = ("in_kev", "internet_exposed", "automatable", "technical_impact")
TECHNICAL_IMPACTS = ("partial", "total")
NEXT_UPGRADE = "next_upgrade"


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
        if not isinstance(rule, dict):
            raise PolicyError(f"{where}: frameworks.{name} must be a mapping")
        if rule.get("clock") not in CLOCKS:
            raise PolicyError(f"{where}: frameworks.{name}.clock must be one of {sorted(CLOCKS)}")
        if not isinstance(rule.get("enabled", True), bool):
            raise PolicyError(f"{where}: frameworks.{name}.enabled must be true or false")
        for unit in ("days", "months"):
            for severity, value in (rule.get(unit) or {}).items():
                if severity not in SEVERITIES:
                    raise PolicyError(
                        f"{where}: frameworks.{name}.{unit}: unknown severity {severity!r}"
                    )
                if not isinstance(value, int) or value < 0:
                    raise PolicyError(
                        f"{where}: frameworks.{name}.{unit}.{severity} must be a whole number >= 0"
                    )
        if rule["clock"] == DECISION_CLOCK:
            _validate_decisions(name, rule, where)


def _validate_decisions(name: str, rule: dict, where: str) -> None:
    """A decision table covers each of the 16 input combinations exactly once."""
    at = f"{where}: frameworks.{name}"
    defaults = rule.get("defaults") or {}
    if not isinstance(defaults.get("automatable"), bool):
        raise PolicyError(f"{at}.defaults.automatable must be true or false")
    if defaults.get("technical_impact") not in TECHNICAL_IMPACTS:
        raise PolicyError(
            f"{at}.defaults.technical_impact must be one of {list(TECHNICAL_IMPACTS)}"
        )
    seen: dict[tuple, int] = {}
    decisions = rule.get("decisions")
    if not isinstance(decisions, list):
        raise PolicyError(f"{at}.decisions must be a list")
    for n, row in enumerate(decisions):
        here = f"{at}.decisions[{n}]"
        if not isinstance(row, dict):
            raise PolicyError(f"{here} must be a mapping")
        for field in ("in_kev", "internet_exposed", "automatable"):
            if not isinstance(row.get(field), bool):
                raise PolicyError(f"{here}.{field} must be true or false")
        if row.get("technical_impact") not in TECHNICAL_IMPACTS:
            raise PolicyError(f"{here}.technical_impact must be one of {list(TECHNICAL_IMPACTS)}")
        days, outcome = row.get("days"), row.get("outcome")
        if (days is None) == (outcome is None):
            raise PolicyError(f"{here}: give exactly one of days or outcome: {NEXT_UPGRADE}")
        if days is not None and (not isinstance(days, int) or isinstance(days, bool) or days < 0):
            raise PolicyError(f"{here}.days must be a whole number >= 0")
        if outcome is not None and outcome != NEXT_UPGRADE:
            raise PolicyError(f"{here}.outcome must be {NEXT_UPGRADE!r}")
        if not isinstance(row.get("forensic_triage", False), bool):
            raise PolicyError(f"{here}.forensic_triage must be true or false")
        combo = tuple(row[f] for f in DECISION_INPUTS)
        if combo in seen:
            raise PolicyError(f"{here} repeats the combination of decisions[{seen[combo]}]")
        seen[combo] = n
    if len(seen) != 2 ** len(DECISION_INPUTS):
        raise PolicyError(f"{at}.decisions must cover all 16 combinations (has {len(seen)})")


def tier_name(days: int | None, forensic_triage: bool) -> str:
    """The BOD 26-04 tier label of a decision: 3d_forensic_triage, 3d, 14d, 60d or next_upgrade."""
    if days is None:
        return NEXT_UPGRADE
    return f"{days}d_forensic_triage" if forensic_triage else f"{days}d"


POLICY_COLUMNS = [
    "framework",
    "title",
    "clause",
    "clock",
    "scope",
    "policy_version",
    "severity",
    "days",
    "months",
    "in_kev",
    "internet_exposed",
    "automatable",
    "technical_impact",
    "tier",
    "forensic_triage",
    "default_automatable",
    "default_technical_impact",
]


def policy_rows(policy: dict) -> pd.DataFrame:
    """One row per framework and severity (or, for a decision table, per input combination):
    what the gap and episode SQL join to. Disabled frameworks give no rows."""
    rows = []
    for name, rule in sorted(policy["frameworks"].items()):
        if not rule.get("enabled", True):
            continue
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
        if rule["clock"] == DECISION_CLOCK:
            defaults = rule["defaults"]
            for decision in rule["decisions"]:
                days = decision.get("days")
                triage = bool(decision.get("forensic_triage", False))
                rows.append(
                    {
                        **base,
                        "scope": _decision_text(decision),
                        "severity": None,
                        "days": days,
                        "months": None,
                        **{field: decision[field] for field in DECISION_INPUTS},
                        "tier": tier_name(days, triage),
                        "forensic_triage": triage,
                        "default_automatable": defaults["automatable"],
                        "default_technical_impact": defaults["technical_impact"],
                    }
                )
            continue
        for severity in SEVERITIES:
            days = (rule.get("days") or {}).get(severity)
            months = (rule.get("months") or {}).get(severity)
            if days is not None or months is not None:
                rows.append({**base, "severity": severity, "days": days, "months": months})
    frame = pd.DataFrame(rows, columns=POLICY_COLUMNS)
    return frame.astype(
        {
            "days": "Int32",
            "months": "Int32",
            "in_kev": "boolean",
            "internet_exposed": "boolean",
            "automatable": "boolean",
            "forensic_triage": "boolean",
            "default_automatable": "boolean",
            "severity": "string",
            "technical_impact": "string",
            "tier": "string",
            "default_technical_impact": "string",
        }
    )


def _decision_text(decision: dict) -> str:
    def yes(flag: bool) -> str:
        return "yes" if flag else "no"

    return (
        f"KEV {yes(decision['in_kev'])}, internet-exposed {yes(decision['internet_exposed'])}, "
        f"automatable {yes(decision['automatable'])}, technical impact {decision['technical_impact']}"
    )


def policy_sha256(policy: dict) -> str:
    return hashlib.sha256(json.dumps(policy, sort_keys=True).encode()).hexdigest()
