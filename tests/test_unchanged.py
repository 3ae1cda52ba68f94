"""Whole-fleet steps cost what changed: staging.vm_snapshots reads only new, changed or removed
inventory captures, and an asset whose inputs are those of its last build does not rebuild
(pipelines/unchanged.py), yet materializes saying since which run it is unchanged. Every table
kept or patched this way equals a rebuild from scratch."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from assets.inventory import open_intervals
from assets.monitoring import STALE_AFTER_DAYS
from pipelines.warehouse import create_macros, read_sql

pytestmark = pytest.mark.slow

SNAPSHOTS = dg.AssetKey(["staging", "vm_snapshots"])
INVENTORY = dg.AssetKey(["marts", "vm_inventory"])
CONFIG_HISTORY = dg.AssetKey(["marts", "vm_config_history"])
IDENTITY = dg.AssetKey(["staging", "vm_identity"])
RAW_VMS = dg.AssetKey(["raw", "virtual_machines"])
BACKUP = dg.AssetKey(["staging", "backup_protected_items"])


@pytest.fixture
def copy_of_demo(demo_run, tmp_path):
    """The session's demo estate and warehouse, copied (the tests change them)."""
    estate, warehouse, _, result = demo_run
    assert result.success
    shutil.copytree(estate, tmp_path / "estate")
    shutil.copy(warehouse, tmp_path / "warehouse.duckdb")
    return tmp_path / "estate", tmp_path / "warehouse.duckdb", result.run_id


def materialize(estate: Path, database: Path, keys: list[dg.AssetKey], as_of: str = "",
                run_config: dict | None = None) -> dict:
    """Run the assets `keys` (and nothing else) of the code location; per asset key, the
    metadata and data version of its materialization."""
    env = {"PATCHLEDGER_ESTATE": str(estate), "PATCHLEDGER_WAREHOUSE": str(database),
           "PATCHLEDGER_REPORTS": str(database.parent / "reports"), "PATCHLEDGER_SOURCE": "files",
           "PATCHLEDGER_AS_OF": as_of}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        from pipelines.definitions import defs

        definitions = defs()
        selection = dg.AssetSelection.assets(*keys).required_multi_asset_neighbors().resolve(
            definitions.resolve_asset_graph())
        job = definitions.resolve_job_def("full_refresh")
        result = job.execute_in_process(instance=dg.DagsterInstance.ephemeral(), asset_selection=list(selection),
                                        run_config=run_config, raise_on_error=True)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    found = {}
    for event in result.get_asset_materialization_events():
        materialization = event.step_materialization_data.materialization
        found[materialization.asset_key] = {
            "metadata": {k: v.value for k, v in materialization.metadata.items()},
            "data_version": materialization.tags.get("dagster/data_version"),
            "run_id": result.run_id,
        }
    return found


def rebuilt_equal(database: Path, table: str, sql_name: str, params: dict | None = None) -> tuple[int, int]:
    """(rows of `table`, rows that differ from the SQL run from scratch on the same warehouse)."""
    conn = duckdb.connect(str(database), read_only=True)
    conn.execute("SET TimeZone = 'UTC'")
    create_macros(conn)
    if sql_name == "vm_config_history":  # from scratch: no current interval to continue
        open_intervals(conn, merge=False)
        params = {**params, "since": None}
    conn.execute(f"CREATE TEMP TABLE fresh AS {read_sql(sql_name)}", params or None)
    rows = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    differ = conn.execute(f"SELECT count(*) FROM ((SELECT * FROM {table} EXCEPT ALL SELECT * FROM fresh) "
                          f"UNION ALL (SELECT * FROM fresh EXCEPT ALL SELECT * FROM {table}))").fetchone()[0]
    conn.close()
    return rows, differ


def snapshot_rows(database: Path, source_file: str) -> list[tuple]:
    conn = duckdb.connect(str(database), read_only=True)
    rows = conn.execute("SELECT vm_id, location, environment FROM staging.vm_snapshots WHERE source_file = ? "
                        "ORDER BY vm_id", [source_file]).fetchall()
    conn.close()
    return rows


def test_snapshots_recompute_only_the_captures_that_changed(copy_of_demo):
    estate, database, first_run = copy_of_demo
    folder = estate / "azure" / "virtual_machines"
    captures = sorted(folder.glob("virtual_machines-*.json"))
    assert len(captures) >= 2
    oldest, newest = captures[0], captures[-1]
    names = [f"azure/virtual_machines/{p.name}" for p in captures]

    # The same inputs: nothing recomputed, the table is the fixture run's.
    same = materialize(estate, database, [RAW_VMS, SNAPSHOTS])[SNAPSHOTS]
    assert same["metadata"]["unchanged"] is True
    assert same["metadata"]["unchanged_since_run"] == first_run
    assert same["metadata"]["captures_recomputed"] == []

    before_newest = snapshot_rows(database, names[-1])
    # A new capture, after the newest, in which the first machine moved to Norway East
    # (location lower case without spaces, by hand: 'norwayeast') and is tagged Environment=Test.
    body = json.loads(newest.read_text())
    machines = body["value"] if isinstance(body, dict) else body
    first = min(machines, key=lambda m: m["id"].lower())
    first["location"] = "Norway East"
    tags = {k: v for k, v in (first.get("tags") or {}).items() if k.lower() != "environment"}
    first["tags"] = {**tags, "Environment": "Test"}
    new = folder / "virtual_machines-20991231T060000Z.json"
    new.write_text(json.dumps(body))
    added = materialize(estate, database, [RAW_VMS, SNAPSHOTS])[SNAPSHOTS]
    new_name = "azure/virtual_machines/virtual_machines-20991231T060000Z.json"
    assert added["metadata"]["unchanged"] is False
    assert added["metadata"]["captures_recomputed"] == [new_name]
    assert added["data_version"] != same["data_version"]
    rows = snapshot_rows(database, new_name)
    assert len(rows) == len(machines)
    assert rows[0] == (first["id"].lower(), "norwayeast", "test")
    assert snapshot_rows(database, names[-1]) == before_newest  # the earlier capture untouched
    assert rebuilt_equal(database, "staging.vm_snapshots", "vm_snapshots", {"captures": None})[1] == 0

    # A changed capture recomputes that capture alone; a removed one (raw rows reloaded from the
    # files present) takes its rows away.
    body = json.loads(oldest.read_text())
    machines = body["value"] if isinstance(body, dict) else body
    changed = min(machines, key=lambda m: m["id"].lower())
    changed["location"] = "Sweden Central"
    oldest.write_text(json.dumps(body))
    newest.unlink()
    reload = {"ops": {"raw__virtual_machines": {"config": {"full_reload": True}}}}
    patched = materialize(estate, database, [RAW_VMS, SNAPSHOTS], run_config=reload)[SNAPSHOTS]
    assert patched["metadata"]["captures_recomputed"] == sorted([names[0], names[-1]])
    assert snapshot_rows(database, names[-1]) == []
    assert snapshot_rows(database, names[0])[0][:2] == (changed["id"].lower(), "swedencentral")
    rows, differ = rebuilt_equal(database, "staging.vm_snapshots", "vm_snapshots", {"captures": None})
    assert differ == 0 and rows > 0


def test_whole_fleet_assets_skip_until_an_input_or_the_date_changes(copy_of_demo):
    estate, database, first_run = copy_of_demo
    keys = [SNAPSHOTS, IDENTITY, INVENTORY, CONFIG_HISTORY, BACKUP]

    # A second run with the inputs of the first: nothing rebuilt, each says since which run.
    again = materialize(estate, database, keys)
    for key in keys:
        assert again[key]["metadata"]["unchanged"] is True, key
        assert again[key]["metadata"]["unchanged_since_run"] == first_run, key
        assert again[key]["data_version"] == again[key]["metadata"]["inputs_fingerprint"], key
    conn = duckdb.connect(str(database), read_only=True)
    as_of = conn.execute("SELECT max(observed_at)::DATE FROM staging.patch_observations").fetchone()[0]
    conn.close()
    assert rebuilt_equal(database, "marts.vm_inventory", "vm_inventory",
                         {"as_of": as_of, "stale_after_days": STALE_AFTER_DAYS})[1] == 0
    assert rebuilt_equal(database, "marts.vm_config_history", "vm_config_history", {"as_of": as_of})[1] == 0

    # A changed register (a category's description in its staging table): the inventory that
    # reads it rebuilds, the snapshots and the configuration history (which do not) stay.
    conn = duckdb.connect(str(database))
    conn.execute("UPDATE staging.asset_categories SET description = 'Application tier' WHERE register_row = 1")
    conn.close()
    after_register = materialize(estate, database, [SNAPSHOTS, INVENTORY, CONFIG_HISTORY])
    assert after_register[INVENTORY]["metadata"]["unchanged"] is False
    assert after_register[SNAPSHOTS]["metadata"]["unchanged"] is True
    assert after_register[CONFIG_HISTORY]["metadata"]["unchanged"] is True
    assert rebuilt_equal(database, "marts.vm_inventory", "vm_inventory",
                         {"as_of": as_of, "stale_after_days": STALE_AFTER_DAYS})[1] == 0

    # Another evaluation date: what binds it rebuilds, for that date; the same date again skips.
    earlier = as_of.fromordinal(as_of.toordinal() - 3).isoformat()
    dated = materialize(estate, database, [INVENTORY, CONFIG_HISTORY, BACKUP], as_of=earlier)
    assert dated[INVENTORY]["metadata"]["unchanged"] is False
    assert dated[CONFIG_HISTORY]["metadata"]["unchanged"] is False
    assert dated[INVENTORY]["metadata"]["as_of"] == earlier
    assert dated[BACKUP]["metadata"]["unchanged"] is True  # backup staging binds no date
    assert rebuilt_equal(database, "marts.vm_config_history", "vm_config_history", {"as_of": earlier})[1] == 0
    again = materialize(estate, database, [INVENTORY, CONFIG_HISTORY], as_of=earlier)
    assert again[INVENTORY]["metadata"]["unchanged"] is True
    assert again[INVENTORY]["metadata"]["unchanged_since_run"] == dated[INVENTORY]["run_id"]

    # A new raw inventory capture (one machine resized) changes the snapshots, and so what reads them.
    folder = estate / "azure" / "virtual_machines"
    body = json.loads(sorted(folder.glob("virtual_machines-*.json"))[-1].read_text())
    machine = (body["value"] if isinstance(body, dict) else body)[0]
    machine.setdefault("properties", {}).setdefault("hardwareProfile", {})["vmSize"] = "Standard_E64s_v5"
    (folder / "virtual_machines-20991231T060000Z.json").write_text(json.dumps(body))
    captured = materialize(estate, database, [RAW_VMS, SNAPSHOTS, IDENTITY, CONFIG_HISTORY], as_of=earlier)
    for key in (SNAPSHOTS, IDENTITY, CONFIG_HISTORY):
        assert captured[key]["metadata"]["unchanged"] is False, key


def test_a_table_named_inside_text_is_not_an_input(tmp_path, monkeypatch):
    """Read: names in the SQL and a literal that is a table's name (as `latest_capture` takes);
    not read: a name in a comment or inside longer text, such as a finding's recommendation."""
    from pipelines import warehouse
    from pipelines.unchanged import sql_inputs

    (tmp_path / "planted_reads.sql").write_text(
        "-- @table Reads three tables; marts.in_a_comment is not one of them.\n"
        "SELECT 'Schedule them (marts.named_in_text), it''s due -- today' AS advice, x FROM marts.read_after_text\n"
        "JOIN staging.joined USING (id)\n"
        "WHERE latest_capture('staging.read_by_name', $as_of) -- staging.commented\n", encoding="utf-8")
    monkeypatch.setattr(warehouse, "SQL_DIR", tmp_path)
    warehouse.read_sql.cache_clear()
    try:
        assert sql_inputs(["planted_reads"]) == ["marts.read_after_text", "staging.joined", "staging.read_by_name"]
        assert sql_inputs(["planted_reads"], exclude=["staging.joined"]) == [
            "marts.read_after_text", "staging.read_by_name"]
    finally:
        warehouse.read_sql.cache_clear()
