"""Identity, canonical patch state, history and point-in-time state over a handmade estate
(tests/fixtures_azure/estate): Resource Graph, a patch operation, Log Analytics in three forms."""

import shutil
from datetime import date
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from partition_runs import materialize_every_day

from assets import inventory, monitoring
from pipelines.ingest.azure import AzureResource
from pipelines.resources import RunSettings, WarehouseResource
from pipelines.sources.compute import assets as compute_assets
from pipelines.sources.log_analytics import assets as la_assets
from pipelines.sources.patch_operations import assets as operations_assets
from pipelines.sources.resource_graph import assets as resource_graph_assets

SCAN_ASSETS = [la_assets, operations_assets, resource_graph_assets]

FIXTURE = Path(__file__).parent / "fixtures_azure" / "estate"
SUB = "/subscriptions/11111111-1111-1111-1111-111111111111"
WIN = f"{SUB}/resourcegroups/rg-prod/providers/microsoft.compute/virtualmachines/vm-win01"
LNX = f"{SUB}/resourcegroups/rg-prod/providers/microsoft.compute/virtualmachines/vm-lnx01"
ARC = f"{SUB}/resourcegroups/rg-arc/providers/microsoft.hybridcompute/machines/arc01"
ONPREM = "nonazure/onprem01.corp.local"


def materialize(tmp_path: Path, as_of: str) -> Path:
    estate = tmp_path / "estate"
    if not estate.exists():
        shutil.copytree(FIXTURE, estate)
    database = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(database)) as conn:
        # staging.asset_categories belongs to another stage; its columns per docs/estate.md.
        conn.execute("CREATE SCHEMA IF NOT EXISTS staging")
        conn.execute(
            "CREATE OR REPLACE TABLE staging.asset_categories AS SELECT * FROM (VALUES "
            "('win-web', 'Windows web', '', 'high', 10, 'Role', 'WEB', 'Windows'), "
            "('any-web', 'Any web', '', 'medium', 20, 'role', 'web', '')) "
            "AS t(category_id, name, description, criticality, rule_order, tag_key, tag_value, os_type)"
        )
        # The supersedence closure belongs to stage 3; none of these patches supersede another.
        conn.execute("CREATE SCHEMA IF NOT EXISTS marts")
        conn.execute("CREATE OR REPLACE TABLE marts.patch_supersedence_closure "
                     "(kb VARCHAR, superseded_kb VARCHAR, depth INTEGER, in_cycle BOOLEAN)")
    result = materialize_every_day(
        [
            *dg.load_assets_from_modules([compute_assets, inventory, monitoring, *SCAN_ASSETS]),
            *dg.load_asset_checks_from_modules([inventory, monitoring]),
        ],
        resources={
            "warehouse": WarehouseResource(database=str(database)),
            "run_settings": RunSettings(estate_dir=str(estate), as_of=as_of),
            "azure": AzureResource(),
        },
    )
    assert result.success
    assert all(c.passed for c in result.get_asset_check_evaluations() if c.check_name != "vm_inventory_stale_share")
    return database


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory) -> duckdb.DuckDBPyConnection:
    database = materialize(tmp_path_factory.mktemp("state"), "2024-03-10")
    conn = duckdb.connect(str(database), read_only=True)
    yield conn
    conn.close()


def rows(conn, sql, params=None):
    return conn.execute(sql, params or []).fetchall()


def state(conn, vm_id, patch_key):
    return rows(
        conn,
        "SELECT state, last_known_state, raw_state, source FROM marts.vm_patch_state "
        "WHERE vm_id = ? AND patch_key = ?",
        [vm_id, patch_key],
    )[0]


def test_identity_across_sources(warehouse):
    machines = dict(rows(warehouse, "SELECT vm_id, machine_kind FROM staging.vm_identity"))
    assert machines == {WIN: "azure_vm", LNX: "azure_vm", ARC: "arc", ONPREM: "non_azure"}
    matched = dict(rows(warehouse, "SELECT computer, matched_by FROM staging.vm_la_machines"))
    # vm-win01: Log Analytics gives an upper-case ARM id; vm-lnx01: only the byte-swapped VMUUID.
    assert matched == {
        "vm-win01.contoso.com": "resource_id",
        "vm-lnx01.internal.cloudapp.net": "vm_uuid",
        "onprem01.corp.local": "unmatched",
    }
    sources = rows(warehouse, "SELECT sources FROM staging.vm_identity WHERE vm_id = ?", [WIN])[0][0]
    assert sources == ["inventory", "log_analytics", "patch_operation", "resource_graph"]


def test_inventory_tags_category_and_coverage(warehouse):
    inv = {
        r[0]: r[1:]
        for r in rows(
            warehouse,
            "SELECT vm_id, role, owner, criticality, environment, asset_category, "
            "asset_category_source, internet_exposed, pci_scope, power_state, patch_mode, "
            "coverage_status, assessment_age_days, wsus_server FROM marts.vm_inventory",
        )
    }
    assert inv[WIN] == (
        "web", "team-web@example.com", "high", "production", "win-web", "rule", True, False,
        "running", "AutomaticByPlatform", "assessed", 1, None,
    )
    assert inv[LNX][4:9] == ("lnx-app", "tag", False, True, "deallocated")
    assert inv[ARC][10:12] == ("unknown_stale", 9)
    assert inv[ONPREM][10:] == ("assessed", 1, "http://wsus01:8530")


def test_canonical_states(warehouse):
    # Failed in the 03-09 install after being missing since the first assessment.
    assert state(warehouse, WIN, "2267602") == ("failed", "failed", "Failed", "patch_operation_install")
    first = rows(
        warehouse,
        "SELECT first_seen_missing_at::VARCHAR FROM marts.vm_patch_state WHERE vm_id = ? AND patch_key = ?",
        [WIN, "2267602"],
    )[0][0]
    assert first.startswith("2024-03-01 02:00:00")
    # Missing, excluded from a run, missing again, then no longer listed from 03-05: absence is
    # not proof of installation, the last observation (03-03, missing) stands.
    assert state(warehouse, WIN, "890830") == (
        "missing", "missing", "Available", "resource_graph_assessment",
    )
    assert state(warehouse, ONPREM, "5035845") == ("installed", "installed", "SucceededOnRetry", "log_analytics_run")
    assert state(warehouse, ONPREM, "5034441")[:3] == ("not_selected", "not_selected", "Excluded")
    assert state(warehouse, ONPREM, "5035849")[:3] == ("not_selected", "not_selected", "NotIncluded")
    assert state(warehouse, LNX, "openssl_3.0.2-0ubuntu1.15")[:2] == ("missing", "missing")
    assert state(warehouse, LNX, "curl_7.81.0-1ubuntu1.16")[:2] == ("not_applicable", "not_applicable")
    # The arc machine was assessed once, 9 days before: stale, last known state kept.
    assert state(warehouse, ARC, "5034439")[:2] == ("unknown_stale", "missing")


def test_pending_reboot_then_reboot_completed(warehouse):
    history = rows(
        warehouse,
        "SELECT observed_at::DATE::VARCHAR, state, raw_state, previous_state FROM marts.vm_patch_history "
        "WHERE vm_id = ? AND patch_key = '5034439' ORDER BY event_seq",
        [WIN],
    )
    assert history == [
        ("2024-03-01", "missing", "Available", None),
        ("2024-03-02", "installed_pending_reboot", "Installed", "missing"),
        # 03-03 still reports a pending reboot: no event; 03-05 reports none.
        ("2024-03-05", "installed", "reboot_completed", "installed_pending_reboot"),
        ("2024-03-08", "installed", "Installed", "installed"),
    ]
    classes = dict(rows(warehouse, "SELECT patch_key, classification FROM marts.vm_patch_state WHERE vm_id = ?", [WIN]))
    assert classes == {"2267602": "Definition", "5034439": "Security", "890830": "UpdateRollup"}


def test_observations_deduplicated(warehouse):
    # The 03-05 assessment is also in the 03-06 daily file: kept once.
    count = rows(
        warehouse,
        "SELECT count(*) FROM staging.patch_observations WHERE vm_id = ? AND run_id = 'act-0305' AND patch_key = '2267602'",
        [WIN],
    )[0][0]
    assert count == 1


def test_state_on_a_past_date(warehouse, tmp_path):
    past = monitoring.vm_patch_state_at(warehouse, date(2024, 3, 2))
    by_key = {(r.vm_id, r.patch_key): r for r in past.itertuples()}
    assert by_key[(WIN, "5034439")].state == "installed_pending_reboot"
    assert by_key[(WIN, "890830")].state == "not_selected"
    assert by_key[(WIN, "890830")].raw_state == "Excluded"
    assert by_key[(WIN, "2267602")].raw_state == "NotSelected"
    assert (ONPREM, "5035845") not in by_key  # not observed yet on 03-02
    # The same as a warehouse built for that date.
    database = materialize(tmp_path, "2024-03-02")
    with duckdb.connect(str(database), read_only=True) as conn:
        built = conn.execute("SELECT * FROM marts.vm_patch_state ORDER BY vm_id, patch_key").df()
    assert built.reset_index(drop=True).equals(
        past.sort_values(["vm_id", "patch_key"]).reset_index(drop=True)
    )
