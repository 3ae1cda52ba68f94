"""The organisation's registers: `<estate>/registers/<name>.csv`, one per entry of REGISTERS
(schemas in docs/estate.md).

Contracts: `raw.register_<name>` (the file's cells as text, plus `_row`, `source_file`,
`source_sha256`, `ingest_run`) and `staging.<name>` (sql/register_<name>.sql). The authorization,
test and exception registers are also ledgered (pipelines/ledger/, assets.py here).
Extension point: a new register is one `Register` entry below, its `sql/register_<name>.sql`,
its section in docs/estate.md and one `register_asset(...)` line in assets.py.
"""

from __future__ import annotations

from dataclasses import dataclass

STATES = ("proposed", "in_test", "authorized", "deferred", "rejected", "revoked", "expired")
ENVIRONMENTS = ("production", "staging", "test", "dev")


@dataclass(frozen=True)
class Column:
    name: str
    kind: str = "text"  # text, enum, timestamp, date, integer, number, boolean, time, list
    required: bool = False
    allowed: tuple[str, ...] = ()  # enum values, compared case-insensitively
    unique: bool = False
    minimum: float | None = None
    maximum: float | None = None


@dataclass(frozen=True)
class Register:
    name: str
    id_column: str
    columns: tuple[Column, ...]

    @property
    def file(self) -> str:
        return f"registers/{self.name}.csv"

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]


def _id(name: str) -> Column:
    return Column(name, required=True, unique=True)


def _enum(name: str, *allowed: str, required: bool = False) -> Column:
    return Column(name, "enum", required=required, allowed=allowed)


REGISTERS: dict[str, Register] = {
    r.name: r
    for r in (
        Register(
            "asset_categories",
            "category_id",
            (
                _id("category_id"),
                Column("name"),
                Column("description"),
                _enum("criticality", "critical", "high", "medium", "low", required=True),
                Column("rule_order", "integer"),
                Column("tag_key"),
                Column("tag_value"),
                _enum("os_type", "windows", "linux"),
            ),
        ),
        Register(
            "baselines",
            "baseline_id",
            (
                Column("baseline_id", required=True),
                Column("category_id", required=True),
                _enum("requirement", "os_build", "patch", "software", required=True),
                Column("item", required=True),
                Column("min_version"),
                Column("effective_from", "date"),
            ),
        ),
        Register(
            "patch_tests",
            "test_id",
            (
                _id("test_id"),
                Column("patch_key", required=True),
                Column("asset_category", required=True),
                _enum("environment", "test", "staging", required=True),
                Column("hosts", "list"),
                Column("started_at", "timestamp"),
                Column("ended_at", "timestamp"),
                _enum("result", "passed", "failed", "aborted", required=True),
                Column("failure_reason"),
                Column("incident_ids", "list"),
                Column("tester", required=True),
            ),
        ),
        Register(
            "authorization_events",
            "event_id",
            (
                _id("event_id"),
                Column("patch_key", required=True),
                Column("asset_category", required=True),
                _enum("environment", *ENVIRONMENTS, "*", required=True),
                _enum("from_state", *STATES),
                _enum("to_state", *STATES, required=True),
                Column("actor", required=True),
                _enum("actor_role", "requester", "tester", "approver", "cab", required=True),
                Column("occurred_at", "timestamp", required=True),
                Column("justification"),
                Column("impact_downtime_minutes", "integer", minimum=0),
                _enum("impact_reboot", "yes", "no", "maybe"),
                Column("impact_dependencies", "list"),
                Column("deploy_order", "integer"),
                Column("change_ticket"),
                Column("emergency", "boolean"),
                Column("pir_completed_at", "timestamp"),
                Column("expires_at", "timestamp"),
            ),
        ),
        Register(
            "exceptions",
            "exception_id",
            (
                _id("exception_id"),
                Column("vm_id"),
                Column("asset_category", required=True),
                Column("patch_key"),
                Column("cve"),
                Column("reason", required=True),
                Column("compensating_control"),
                Column("risk_owner"),
                Column("requested_by", required=True),
                Column("approver"),
                Column("approved_at", "timestamp"),
                Column("expires_at", "timestamp"),
                _enum("status", "active", "revoked", required=True),
            ),
        ),
        Register(
            "support_incidents",
            "incident_id",
            (
                _id("incident_id"),
                _enum("source", "vendor", "pss", "internal", required=True),
                Column("external_case_id"),
                Column("patch_key"),
                Column("vm_id"),
                Column("opened_at", "timestamp", required=True),
                Column("closed_at", "timestamp"),
                Column("severity"),
                Column("summary"),
            ),
        ),
        Register(
            "rollbacks",
            "rollback_id",
            (
                _id("rollback_id"),
                Column("vm_id", required=True),
                Column("patch_key", required=True),
                Column("rolled_back_at", "timestamp", required=True),
                Column("reason"),
                Column("incident_id"),
                Column("actor"),
            ),
        ),
        Register(
            "maintenance_windows",
            "window_id",
            (
                _id("window_id"),
                Column("name"),
                Column("rrule", required=True),
                Column("start_time", "time", required=True),
                Column("duration_minutes", "integer", required=True, minimum=1),
                Column("time_zone", required=True),
                Column("ring", "integer", required=True, minimum=0, maximum=3),
                Column("environment"),
                Column("capacity_vms", "integer", minimum=0),
                Column("max_role_share", "number", minimum=0, maximum=1),
            ),
        ),
        Register(
            "blackout_dates",
            "blackout_id",
            (
                _id("blackout_id"),
                Column("starts_on", "date", required=True),
                Column("ends_on", "date", required=True),
                Column("environment"),
                Column("reason"),
            ),
        ),
    )
}
