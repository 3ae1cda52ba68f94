"""Dagster resources: the DuckDB warehouse, the run settings (estate, as-of date, source) and, from
the sources, Azure (pipelines/ingest/azure.py) and the bulletin channels."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from typing import Any

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource
from pydantic import Field

from pipelines import settings
from pipelines.lake import current_lake
from pipelines.warehouse import sql_literal

SCHEMAS = ("raw", "staging", "marts", "ledger")
# DuckDB's memory limit per connection. 3 GB keeps the whole process under 4 GiB at 10,000 VMs x
# 90 days (DuckDB spills what does not fit to disk); raise it on a bigger machine.
DEFAULT_MEMORY_LIMIT = "3GB"


# database -> monotonic time at which waiting for its lock last timed out in this process
_lock_timeouts: dict[str, float] = {}


class WarehouseLockedError(RuntimeError):
    """Another process holds the DuckDB file for writing."""


class WarehouseResource(DuckDBResource):
    """The DuckDB warehouse, one file, one writer at a time.

    Connections are opened only inside asset bodies and closed at once. Every connection runs
    in UTC, and the memory and thread limits are configuration so that a large estate fits the
    machine. A file locked by another process is retried for `lock_timeout_seconds`, then the
    step fails with a message that says who to stop, rather than hanging.
    """

    memory_limit: str = Field(default=DEFAULT_MEMORY_LIMIT, description="DuckDB memory_limit for each connection.")
    threads: int = Field(default=0, description="DuckDB threads; 0 leaves DuckDB's default.")
    lock_timeout_seconds: float = Field(
        default=60.0, description="How long to wait for another writer before failing."
    )

    @contextmanager
    def get_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        conn = connect_warehouse(
            self.database,
            memory_limit=self.memory_limit,
            threads=self.threads,
            lock_timeout_seconds=self.lock_timeout_seconds,
            config=self.connection_config,
        )
        try:
            yield conn
        finally:
            conn.close()


def connect_warehouse(
    database: str,
    *,
    read_only: bool = False,
    memory_limit: str = DEFAULT_MEMORY_LIMIT,
    threads: int = 0,
    lock_timeout_seconds: float = 60.0,
    config: dict | None = None,
) -> duckdb.DuckDBPyConnection:
    """Open the warehouse with the project's session settings (UTC, limits, schemas)."""
    if database != ":memory:":
        from pathlib import Path

        Path(database).parent.mkdir(parents=True, exist_ok=True)
    # After one wait has timed out in this process, the next steps try once and fail at once,
    # rather than each waiting the full timeout for the same holder.
    last_timeout = _lock_timeouts.get(database)
    waited_recently = last_timeout is not None and time.monotonic() - last_timeout < lock_timeout_seconds
    deadline = time.monotonic() + (0 if waited_recently else lock_timeout_seconds)
    delay = 0.25
    while True:
        try:
            conn = duckdb.connect(database, read_only=read_only, config=dict(config or {}))
            break
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower():
                raise
            if time.monotonic() >= deadline:
                _lock_timeouts[database] = time.monotonic()
                holder = re.search(r"PID (\d+)", str(exc))
                who = f"process {holder.group(1)}" if holder else "another process"
                raise WarehouseLockedError(
                    f"The warehouse {database} is locked by {who}. Another PatchLedger run or an "
                    "open DuckDB session holds it; wait for the run to end or close that session "
                    "(analysts should open the published copy, <warehouse>-read.duckdb: see README, 'The warehouse')."
                ) from exc
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
    _lock_timeouts.pop(database, None)
    # One round trip for the session settings (SET takes no parameters) and the schemas.
    session = ["SET TimeZone = 'UTC'", f"SET memory_limit = {sql_literal(_checked_memory_limit(memory_limit))}"]
    if threads:
        session.append(f"SET threads = {int(threads)}")
    if not read_only:
        session += [f"CREATE SCHEMA IF NOT EXISTS {schema}" for schema in SCHEMAS]
    conn.execute(";\n".join(session))
    lake = current_lake()
    if lake is not None:
        lake.register(conn)  # the raw and staging views read a remote lake
    return conn


def _checked_memory_limit(value: str) -> str:
    if not re.fullmatch(r"\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB|%)", value.strip()):
        raise ValueError(f"memory_limit must look like '4GB', not {value!r}")
    return value.strip()


class RunSettings(dg.ConfigurableResource):
    """What a run reads and for which date.

    `as_of` is the evaluation date (UTC, YYYY-MM-DD). Left empty, it is the day of the newest
    observation in the warehouse, so the same inputs always give the same marts.
    """

    estate_dir: str = Field(description="The estate folder (offline source mode).")
    reports_dir: str = Field(default="reports", description="Where the reports are written.")
    source: str = Field(default="files", description="'files' (estate folder) or 'azure' (live).")
    as_of: str = Field(default="", description="Evaluation date YYYY-MM-DD; empty = newest data.")
    ledger_dir: str = Field(
        default="", description="Where the ledger's append-only files are kept; empty = 'ledger' beside the estate."
    )
    known_by: str = Field(
        default="", description="A pack as known then: only register rows (and, through the rebuild's "
        "estate, scan files) that had arrived before this UTC instant (ISO 8601); empty = as corrected since."
    )
    verify_files: bool = Field(
        default=False, description="Hash every estate file, rather than take a file whose size and mtime "
        "equal the manifest's as unchanged (PATCHLEDGER_VERIFY_FILES, `patchledger run --verify-files`)."
    )

    def ledger_path(self) -> str:
        return self.ledger_dir or str(settings.default_ledger_dir(self.estate_dir))

    def known_by_time(self) -> datetime | None:
        return datetime.fromisoformat(self.known_by) if self.known_by else None

    def as_of_date(self) -> date | None:
        # Outside a run (the CLI's planner) the field is still the unresolved EnvVar.
        value = self.as_of.get_value() if isinstance(self.as_of, dg.EnvVar) else self.as_of
        if not value:
            return None
        try:
            return date.fromisoformat(value)
        except ValueError as exc:
            raise ValueError(f"as_of must be a date YYYY-MM-DD, not {value!r}") from exc


def lock_timeout_seconds() -> float:
    """How long a writer waits for the warehouse file (PATCHLEDGER_LOCK_TIMEOUT_SECONDS, default 60)."""
    value = os.environ.get("PATCHLEDGER_LOCK_TIMEOUT_SECONDS", "60")
    try:
        return float(value)
    except ValueError as exc:
        raise ValueError(f"PATCHLEDGER_LOCK_TIMEOUT_SECONDS must be a number of seconds, not {value!r}") from exc


def env_flag(name: str) -> bool:
    """A yes/no variable: true for 1, true or yes (any case), false when unset."""
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes")


def env_or(name: str, default: Any, kind: type = str) -> Any:
    """`dg.EnvVar(name)` when the variable is set and not empty, else `default`: Dagster resolves
    it when a run starts and shows the variable's name, not its value. (An EnvVar has no default
    of its own, dagster#16232.)"""
    if not os.environ.get(name):
        return default
    return dg.EnvVar.int(name) if kind is int else dg.EnvVar(name)


def _from_env(**fields: str | tuple[str, type]) -> dict:
    """Resource fields bound to the environment variables that are set (`env_or`); an unset
    variable leaves the field's default."""
    bound = {}
    for field, spec in fields.items():
        name, kind = spec if isinstance(spec, tuple) else (spec, str)
        if os.environ.get(name):
            bound[field] = env_or(name, None, kind)
    return bound


def default_resources() -> dict:
    """The resources of a run from the environment (README, "Environment"); tests pass their
    own with `resources=`. Plain values are EnvVars (_from_env). The paths are resolved here,
    against the working directory and each other (the reports beside the warehouse, the ledger
    beside the estate), the source mode is checked here so that a wrong value fails at load, and
    the lock timeout and the assessment flag are a float and a bool, which EnvVar (str and int
    only) cannot carry."""
    from pipelines.ingest.azure import AzureResource
    from pipelines.sources.bulletins.resource import bulletin_resources  # it imports this module

    return {
        "warehouse": WarehouseResource(
            database=str(settings.warehouse_path()),
            lock_timeout_seconds=lock_timeout_seconds(),
            **_from_env(memory_limit="PATCHLEDGER_DUCKDB_MEMORY", threads=("PATCHLEDGER_DUCKDB_THREADS", int)),
        ),
        "run_settings": RunSettings(
            estate_dir=str(settings.estate_dir()),
            reports_dir=str(settings.reports_dir()),
            source=settings.source_mode(),
            verify_files=env_flag("PATCHLEDGER_VERIFY_FILES"),
            **_from_env(ledger_dir="PATCHLEDGER_LEDGER", as_of="PATCHLEDGER_AS_OF"),
        ),
        "azure": AzureResource(
            assess_patches=env_flag("PATCHLEDGER_ASSESS_PATCHES"),
            **_from_env(subscriptions="PATCHLEDGER_SUBSCRIPTIONS", workspace_ids="PATCHLEDGER_WORKSPACES"),
        ),
        **bulletin_resources(),
    }
