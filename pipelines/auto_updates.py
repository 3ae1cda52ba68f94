"""The automatic-updates policy: which machines are production, and the approved exceptions.

Defaults in pipelines/config/automatic_updates.yaml, overridden key by key by the estate's
policy/automatic_updates.yaml. Errors name the file and the field.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import yaml

DEFAULT = Path(__file__).parent / "config" / "automatic_updates.yaml"
OVERRIDE = ("policy", "automatic_updates.yaml")
EXCEPTION_FIELDS = ("exception_id", "vm_id", "scope", "reason", "requested_by", "approver",
                    "approved_at", "expires_at", "status")


class AutoUpdatePolicyError(ValueError):
    pass


def load_auto_update_policy(estate_dir: Path | None) -> tuple[dict, str]:
    """The policy (defaults with the estate's keys replacing them) and the file it came from."""
    policy = yaml.safe_load(DEFAULT.read_text(encoding="utf-8"))
    where = str(DEFAULT)
    override = estate_dir.joinpath(*OVERRIDE) if estate_dir else None
    if override is not None and override.is_file():
        where = str(override)
        try:
            extra = yaml.safe_load(override.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise AutoUpdatePolicyError(f"{where}: not valid YAML: {exc}") from exc
        if not isinstance(extra, dict):
            raise AutoUpdatePolicyError(f"{where}: must be a mapping")
        unknown = sorted(set(extra) - set(policy))
        if unknown:
            raise AutoUpdatePolicyError(f"{where}: unknown key {unknown[0]!r}")
        policy.update(extra)
    _validate(policy, where)
    return policy, where


def _strings(policy: dict, name: str, where: str) -> list[str]:
    values = policy.get(name) or []
    if not isinstance(values, list) or not all(isinstance(v, str) and v.strip() for v in values):
        raise AutoUpdatePolicyError(f"{where}: {name} must be a list of non-empty strings")
    return values


def _timestamp(value, at: str) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        parsed = value
    else:
        try:
            parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError as exc:
            raise AutoUpdatePolicyError(f"{at}: {value!r} is not an ISO 8601 timestamp") from exc
    if parsed.tzinfo is None:
        raise AutoUpdatePolicyError(f"{at}: {value!r} needs an offset or Z (read as UTC)")
    return parsed.astimezone(UTC)


def _validate(policy: dict, where: str) -> None:
    _strings(policy, "production_environments", where)
    _strings(policy, "production_scopes", where)
    exceptions = policy.get("exceptions") or []
    if not isinstance(exceptions, list):
        raise AutoUpdatePolicyError(f"{where}: exceptions must be a list")
    seen = set()
    for n, row in enumerate(exceptions):
        at = f"{where}: exceptions[{n}]"
        if not isinstance(row, dict):
            raise AutoUpdatePolicyError(f"{at} must be a mapping")
        unknown = sorted(set(row) - set(EXCEPTION_FIELDS))
        if unknown:
            raise AutoUpdatePolicyError(f"{at}: unknown field {unknown[0]!r}")
        if not str(row.get("exception_id") or "").strip():
            raise AutoUpdatePolicyError(f"{at}.exception_id is required")
        if row["exception_id"] in seen:
            raise AutoUpdatePolicyError(f"{at}.exception_id {row['exception_id']!r} is repeated")
        seen.add(row["exception_id"])
        if bool(row.get("vm_id")) == bool(row.get("scope")):
            raise AutoUpdatePolicyError(f"{at}: give exactly one of vm_id or scope")
        if row.get("status", "active") not in ("active", "revoked"):
            raise AutoUpdatePolicyError(f"{at}.status must be active or revoked")
        for field in ("approved_at", "expires_at"):
            _timestamp(row.get(field), f"{at}.{field}")


def write_policy_tables(conn, policy: dict, where: str) -> None:
    """staging.auto_update_policy (one row) and staging.auto_update_exceptions (one row per
    exception, as written: the validity rules apply in sql/auto_update_periods.sql)."""
    conn.execute(
        "CREATE OR REPLACE TABLE staging.auto_update_policy AS SELECT "
        "$envs::VARCHAR[] AS production_environments, $scopes::VARCHAR[] AS production_scopes",
        {"envs": [v.strip().lower() for v in policy.get("production_environments") or []],
         "scopes": [v.strip().lower() for v in policy.get("production_scopes") or []]},
    )
    conn.execute(
        "CREATE OR REPLACE TABLE staging.auto_update_exceptions (exception_id VARCHAR, vm_id VARCHAR, "
        "scope VARCHAR, reason VARCHAR, requested_by VARCHAR, approver VARCHAR, "
        "approved_at TIMESTAMPTZ, expires_at TIMESTAMPTZ, status VARCHAR)"
    )
    for n, row in enumerate(policy.get("exceptions") or []):
        at = f"{where}: exceptions[{n}]"
        conn.execute(
            "INSERT INTO staging.auto_update_exceptions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                str(row["exception_id"]),
                str(row["vm_id"]).lower() if row.get("vm_id") else None,
                str(row["scope"]).lower() if row.get("scope") else None,
                row.get("reason"),
                row.get("requested_by"),
                row.get("approver"),
                _timestamp(row.get("approved_at"), f"{at}.approved_at"),
                _timestamp(row.get("expires_at"), f"{at}.expires_at"),
                row.get("status", "active"),
            ],
        )
