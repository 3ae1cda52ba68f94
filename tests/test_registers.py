"""Register loading (validation, normalization, missing files) and stage-2 baselines."""

from __future__ import annotations

import pytest
from fixtures_registers import (
    VM_A,
    VM_B,
    VM_C,
    create_install_tables,
    event,
    materialize,
    query,
    write_register,
)

from assets import baselines as stage2
from pipelines.resources import connect_warehouse
from pipelines.sources.registers import assets as register_assets
from pipelines.sources.registers.reader import RegisterValidationError, load_register


def load(tmp_path, estate, name):
    conn = connect_warehouse(":memory:")
    try:
        return load_register(conn, estate, name, "run-1"), conn.execute(
            "SELECT * FROM staging." + name).fetchall()
    finally:
        conn.close()


def problems(tmp_path, estate, name):
    with pytest.raises(RegisterValidationError) as raised:
        load(tmp_path, estate, name)
    return [str(p) for p in raised.value.problems]


def test_bad_cells_name_file_row_and_field(tmp_path):
    estate = tmp_path / "estate"
    write_register(estate, "authorization_events", [
        event("e1", "KB1", "web", "production", "", "proposed", "a", "requester", "2026-10-01T00:00:00Z"),
        event("e2", "KB1", "web", "prod", "proposed", "in_test", "b", "tester", "yesterday"),
        event("e1", "KB1", "web", "production", "in_test", "authorized", "", "approver",
              "2026-10-03T00:00:00Z", deploy_order="first"),
    ])
    assert problems(tmp_path, estate, "authorization_events") == [
        "registers/authorization_events.csv: row 2, field environment: 'prod': must be one of "
        "production/staging/test/dev/*",
        "registers/authorization_events.csv: row 2, field occurred_at: 'yesterday': "
        "not an ISO 8601 timestamp",
        "registers/authorization_events.csv: row 3, field actor: '': a value is required",
        "registers/authorization_events.csv: row 3, field deploy_order: 'first': not an integer",
        "registers/authorization_events.csv: row 3, field event_id: 'e1': "
        "duplicate id (already used on an earlier row)",
    ]


def test_wrong_header_and_ragged_rows(tmp_path):
    estate = tmp_path / "estate"
    path = estate / "registers" / "rollbacks.csv"
    path.parent.mkdir(parents=True)
    path.write_text("rollback_id,vm,patch_key,rolled_back_at,reason,incident_id,actor\n")
    assert problems(tmp_path, estate, "rollbacks") == [
        "registers/rollbacks.csv: header, field vm_id: column missing from the header",
        "registers/rollbacks.csv: header, field vm: unexpected column (see docs/estate.md)",
    ]
    path.write_text("rollback_id,vm_id,patch_key,rolled_back_at,reason,incident_id,actor\n"
                    "r1,vm,KB1,2026-10-01T00:00:00Z,x,,ops\nr2,vm,KB1\n")
    assert problems(tmp_path, estate, "rollbacks") == [
        "registers/rollbacks.csv: row 2: has 3 fields, the header has 7"]


def test_identifiers_and_timestamps_are_normalized(tmp_path):
    estate = tmp_path / "estate"
    write_register(estate, "rollbacks", [
        {"rollback_id": "r1", "vm_id": VM_A.upper(), "patch_key": "kb5001",
         "rolled_back_at": "2026-10-01T10:00:00+02:00"},
        {"rollback_id": "r2", "vm_id": VM_B, "patch_key": "openssl_3.0.2-0ubuntu1.10",
         "rolled_back_at": "2026-10-01T10:00:00Z"},
    ])
    result, rows = load(tmp_path, estate, "rollbacks")
    assert result.rows == 2 and result.found and len(result.source_sha256) == 64
    assert [(r[1], r[2], r[3].isoformat()) for r in rows] == [
        (VM_A, "5001", "2026-10-01T08:00:00+00:00"),
        (VM_B, "openssl_3.0.2-0ubuntu1.10", "2026-10-01T10:00:00+00:00"),
    ]


def test_missing_register_is_an_empty_table_with_a_warning(tmp_path):
    result, rows = load(tmp_path, tmp_path / "nowhere", "exceptions")
    assert rows == [] and not result.found
    assert result.warnings == ["registers/exceptions.csv not found in the estate: "
                               "staging.exceptions is empty"]
    run = materialize([register_assets.exceptions], tmp_path, tmp_path / "nowhere")
    assert run.success
    assert query(tmp_path, "SELECT count(*) FROM raw.register_exceptions") == [(0,)]
    assert ("exception_id", "VARCHAR") in query(tmp_path, """
        SELECT column_name, data_type FROM duckdb_columns()
        WHERE schema_name = 'staging' AND table_name = 'exceptions'""")


def test_a_bad_register_fails_the_asset_and_keeps_the_last_good_table(tmp_path):
    estate = tmp_path / "estate"
    write_register(estate, "blackout_dates", [
        {"blackout_id": "b1", "starts_on": "2026-12-24", "ends_on": "2026-12-26"}])
    assert materialize([register_assets.blackout_dates], tmp_path, estate).success
    write_register(estate, "blackout_dates", [
        {"blackout_id": "b1", "starts_on": "24/12/2026", "ends_on": "2026-12-26"}])
    run = materialize([register_assets.blackout_dates], tmp_path, estate, raise_on_error=False)
    assert not run.success
    assert query(tmp_path, "SELECT blackout_id, environment FROM staging.blackout_dates") == [
        ("b1", "*")]


def unchanged(run) -> list[bool]:
    return [e.step_materialization_data.materialization.metadata["unchanged"].value
            for e in run.get_asset_materialization_events()]


def test_an_unchanged_register_is_not_read_again_and_a_changed_one_is(tmp_path):
    estate = tmp_path / "estate"
    write_register(estate, "blackout_dates", [
        {"blackout_id": "b1", "starts_on": "2026-12-24", "ends_on": "2026-12-26"}])
    first = materialize([register_assets.blackout_dates], tmp_path, estate)
    second = materialize([register_assets.blackout_dates], tmp_path, estate)
    assert unchanged(first) == [False] and unchanged(second) == [True]
    # The rows as the first run received them (its run id), staging rebuilt from them.
    assert query(tmp_path, "SELECT blackout_id, ingest_run FROM raw.register_blackout_dates") == [
        ("b1", first.run_id)]
    assert query(tmp_path, "SELECT blackout_id, environment FROM staging.blackout_dates") == [("b1", "*")]

    # One changed cell: read and validated again.
    write_register(estate, "blackout_dates", [
        {"blackout_id": "b1", "starts_on": "2026-12-24", "ends_on": "2026-12-27"}])
    third = materialize([register_assets.blackout_dates], tmp_path, estate)
    assert unchanged(third) == [False]
    assert query(tmp_path, "SELECT ends_on::VARCHAR FROM staging.blackout_dates") == [("2026-12-27",)]
    assert query(tmp_path, "SELECT ingest_run FROM raw.register_blackout_dates") == [(third.run_id,)]


def test_baseline_drift_and_compliance_by_category(tmp_path):
    estate = tmp_path / "estate"
    write_register(estate, "asset_categories", [
        {"category_id": "win-web", "criticality": "high", "rule_order": "1"},
        {"category_id": "win-sql", "criticality": "critical", "rule_order": "2"},
    ])
    write_register(estate, "baselines", [
        {"baseline_id": "B1", "category_id": "win-web", "requirement": "os_build",
         "item": "Windows Server 2022", "min_version": "10.0.20348.2000"},
        {"baseline_id": "B1", "category_id": "win-web", "requirement": "patch", "item": "KB5001"},
        {"baseline_id": "B1", "category_id": "win-web", "requirement": "software", "item": "IIS",
         "min_version": "10.0"},
        {"baseline_id": "B2", "category_id": "win-web", "requirement": "patch", "item": "KB5009",
         "effective_from": "2027-01-01"},
    ])
    create_install_tables(
        tmp_path,
        inventory=[
            (VM_A, "web-a", "production", "win-web", "Windows Server 2022 Datacenter", "10.0.20348.2340"),
            (VM_B, "web-b", "production", "win-web", "Windows Server 2022 Datacenter", "10.0.20348.999"),
            (VM_C, "sql-c", "production", "win-sql", "Windows Server 2019", "10.0.17763.1"),
        ],
        observations=[
            (VM_A, "5001", "installed", "2026-11-01T00:00:00Z"),
            (VM_B, "5001", "missing", "2026-11-01T00:00:00Z"),
        ],
    )
    run = materialize([register_assets.asset_categories, register_assets.baselines, stage2.baseline_drift,
                       stage2.baseline_compliance], tmp_path, estate)
    assert run.success
    drift = query(tmp_path, """
        SELECT vm_id, requirement, status, distribution_priority FROM marts.baseline_drift
        ORDER BY vm_id, requirement""")
    assert drift == [
        (VM_A, "os_build", "compliant", 2), (VM_A, "patch", "compliant", 2),
        (VM_A, "software", "not_assessable", 2),
        (VM_B, "os_build", "below_min_build", 2), (VM_B, "patch", "missing_patch", 2),
        (VM_B, "software", "not_assessable", 2),
    ]
    assert query(tmp_path, """
        SELECT asset_category, distribution_priority, vms, vms_compliant, vms_drifted,
               vms_without_baseline, pct_compliant, missing_patches, below_min_build
        FROM marts.baseline_compliance ORDER BY distribution_priority""") == [
        ("win-sql", 1, 1, 0, 0, 1, 0.0, 0, 0),
        ("win-web", 2, 2, 1, 1, 0, 50.0, 1, 1),
    ]
