"""Small register estates for the stage 2 and stage 5 tests, written into tmp_path."""

from __future__ import annotations

import csv
from pathlib import Path

import dagster as dg

from pipelines.resources import RunSettings, WarehouseResource, connect_warehouse
from pipelines.sources.registers import REGISTERS

AS_OF = "2026-11-27"
VM_A = "/subscriptions/s1/resourcegroups/rg/providers/microsoft.compute/virtualmachines/web-a"
VM_B = "/subscriptions/s1/resourcegroups/rg/providers/microsoft.compute/virtualmachines/web-b"
VM_C = "/subscriptions/s1/resourcegroups/rg/providers/microsoft.compute/virtualmachines/web-c"


def write_register(estate: Path, name: str, rows: list[dict[str, str]]) -> Path:
    """Write registers/<name>.csv with the schema's header; missing cells are empty."""
    path = estate / "registers" / f"{name}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = REGISTERS[name].column_names
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row.get(c, "") for c in columns})
    return path


def event(event_id, patch, category, env, from_state, to_state, actor, role, at, **extra):
    return {
        "event_id": event_id, "patch_key": patch, "asset_category": category,
        "environment": env, "from_state": from_state, "to_state": to_state, "actor": actor,
        "actor_role": role, "occurred_at": at, **extra,
    }


def resources(tmp_path: Path, estate: Path) -> dict:
    return {
        "warehouse": WarehouseResource(database=str(tmp_path / "w.duckdb")),
        "run_settings": RunSettings(estate_dir=str(estate), as_of=AS_OF),
    }


def materialize(assets: list, tmp_path: Path, estate: Path, **kwargs) -> dg.ExecuteInProcessResult:
    return dg.materialize(assets, resources=resources(tmp_path, estate), **kwargs)


def query(tmp_path: Path, sql: str, params=None) -> list[tuple]:
    conn = connect_warehouse(str(tmp_path / "w.duckdb"))
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def create_install_tables(tmp_path: Path, inventory: list[tuple], observations: list[tuple]) -> None:
    """The other stages' tables this stage reads: marts.vm_inventory, staging.patch_observations,
    marts.vm_patch_state (latest observation per VM x patch)."""
    conn = connect_warehouse(str(tmp_path / "w.duckdb"))
    try:
        conn.execute(
            "CREATE OR REPLACE TABLE marts.vm_inventory (vm_id VARCHAR, name VARCHAR, "
            "environment VARCHAR, asset_category VARCHAR, os_name VARCHAR, os_version VARCHAR)"
        )
        conn.executemany("INSERT INTO marts.vm_inventory VALUES (?, ?, ?, ?, ?, ?)", inventory)
        conn.execute(
            "CREATE OR REPLACE TABLE staging.patch_observations (vm_id VARCHAR, patch_key VARCHAR, "
            "kb VARCHAR, state VARCHAR, source VARCHAR, observed_at TIMESTAMPTZ, run_id VARCHAR)"
        )
        conn.executemany(
            "INSERT INTO staging.patch_observations VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(vm, key, key, state, "resource_graph_installation", at, f"run-{n}")
             for n, (vm, key, state, at) in enumerate(observations)],
        )
        conn.execute(
            "CREATE OR REPLACE TABLE marts.vm_patch_state AS SELECT vm_id, patch_key, kb, state, "
            "observed_at FROM staging.patch_observations "
            "QUALIFY row_number() OVER (PARTITION BY vm_id, patch_key ORDER BY observed_at DESC) = 1"
        )
    finally:
        conn.close()
