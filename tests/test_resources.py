"""The run's resources from the environment: set variables are Dagster EnvVars, resolved when the
run starts; unset ones leave the documented defaults."""

from __future__ import annotations

import dagster as dg

from pipelines.ingest.azure import AzureResource
from pipelines.resources import RunSettings, WarehouseResource, default_resources

VARIABLES = ("PATCHLEDGER_DUCKDB_MEMORY", "PATCHLEDGER_DUCKDB_THREADS", "PATCHLEDGER_AS_OF",
             "PATCHLEDGER_SUBSCRIPTIONS", "PATCHLEDGER_WORKSPACES", "PATCHLEDGER_LEDGER",
             "PATCHLEDGER_ASSESS_PATCHES")


def _seen_in_a_run(resources: dict) -> dict:
    seen = {}

    @dg.asset
    def probe(warehouse: WarehouseResource, run_settings: RunSettings, azure: AzureResource) -> None:
        seen.update(memory_limit=warehouse.memory_limit, threads=warehouse.threads,
                    as_of=run_settings.as_of, subscriptions=azure.subscription_ids(),
                    workspace_ids=azure.workspaces(), assess_patches=azure.assess_patches,
                    ledger_dir=run_settings.ledger_dir)

    assert dg.materialize([probe], resources=resources).success
    return seen


def test_set_variables_are_env_vars_resolved_when_the_run_starts(tmp_path, monkeypatch):
    monkeypatch.setenv("PATCHLEDGER_WAREHOUSE", str(tmp_path / "w.duckdb"))
    monkeypatch.setenv("PATCHLEDGER_DUCKDB_MEMORY", "1GB")
    monkeypatch.setenv("PATCHLEDGER_DUCKDB_THREADS", "2")
    monkeypatch.setenv("PATCHLEDGER_AS_OF", "2026-03-31")
    monkeypatch.setenv("PATCHLEDGER_SUBSCRIPTIONS", "sub-a,sub-b")
    monkeypatch.setenv("PATCHLEDGER_WORKSPACES", "ws-1")
    monkeypatch.setenv("PATCHLEDGER_LEDGER", str(tmp_path / "ledger"))
    monkeypatch.setenv("PATCHLEDGER_ASSESS_PATCHES", "Yes")
    resources = default_resources()
    # What the UI shows: the variable, not its value.
    assert resources["warehouse"].memory_limit == dg.EnvVar("PATCHLEDGER_DUCKDB_MEMORY")
    assert resources["run_settings"].as_of == dg.EnvVar("PATCHLEDGER_AS_OF")
    assert resources["azure"].subscriptions == dg.EnvVar("PATCHLEDGER_SUBSCRIPTIONS")
    # Resolved at the start of the run: a value changed after the resources were built counts.
    monkeypatch.setenv("PATCHLEDGER_AS_OF", "2026-04-30")
    assert _seen_in_a_run(resources) == {
        "memory_limit": "1GB", "threads": 2, "as_of": "2026-04-30",
        "subscriptions": ["sub-a", "sub-b"], "workspace_ids": ["ws-1"], "assess_patches": True,
        "ledger_dir": str(tmp_path / "ledger"),
    }


def test_unset_variables_leave_the_defaults(tmp_path, monkeypatch):
    monkeypatch.setenv("PATCHLEDGER_WAREHOUSE", str(tmp_path / "w.duckdb"))
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    # README, "Environment": 3GB, DuckDB's threads (0), newest data (""), no live ids, ledger beside the estate.
    assert _seen_in_a_run(default_resources()) == {
        "memory_limit": "3GB", "threads": 0, "as_of": "", "subscriptions": [], "workspace_ids": [],
        "assess_patches": False, "ledger_dir": "",
    }
