"""The SQL-header factory: headers parsed, errors named, unique-key checks on planted tables,
and every header declaration honoured by the code location."""

from __future__ import annotations

import duckdb
import pytest

from pipelines.resources import WarehouseResource
from pipelines.tables import unique_key_checks
from pipelines.warehouse import parse_sql_header, sql_header

PLANTED = """\
-- @summary Two lines of
-- @summary asset description.
-- @group stage6_patch_monitoring
-- @depends marts.vm_inventory, staging.sla_policy
-- @depends ledger.exceptions
-- @unique vm_id, patch_key as vm_patch_unique: One row per machine and patch.
-- @unique gap_id
-- @table The table's comment,
-- @table on two lines.
-- @column vm_id: Machine: lower-case ARM id.
SELECT 1 AS vm_id -- @column inside the body is read too, as before
"""


def test_header_declarations_are_parsed():
    header = parse_sql_header(PLANTED, "sql/planted.sql")
    assert header.summary == "Two lines of\nasset description."
    assert header.group == "stage6_patch_monitoring"
    assert header.depends == ("marts.vm_inventory", "staging.sla_policy", "ledger.exceptions")
    assert [(u.columns, u.check_name, u.description) for u in header.unique] == [
        (("vm_id", "patch_key"), "vm_patch_unique", "One row per machine and patch."),
        (("gap_id",), "gap_id_unique", ""),
    ]
    assert header.description == "The table's comment, on two lines."
    # Only the first ':' separates a column from its text.
    assert header.columns["vm_id"] == "Machine: lower-case ARM id."


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("-- @depends marts.vm_inventory, vm_patch_state",
         "sql/bad.sql line 2 (@depends): not a schema-qualified table name: 'vm_patch_state'"),
        ("-- @unique gap id", "sql/bad.sql line 2 (@unique): not an identifier: 'gap id'"),
        ("-- @unique gap_id as gap-ids: x", "sql/bad.sql line 2 (@unique): not an identifier: 'gap-ids'"),
    ],
)
def test_a_malformed_declaration_names_file_line_and_tag(line, message):
    with pytest.raises(ValueError) as error:
        parse_sql_header(f"-- @table t\n{line}\nSELECT 1", "sql/bad.sql")
    assert str(error.value) == message


def _run_check(tmp_path, rows):
    conn = duckdb.connect(str(tmp_path / "w.duckdb"))
    conn.execute("CREATE SCHEMA marts")
    conn.execute("CREATE TABLE marts.compliance_gaps (gap_id VARCHAR, vm_id VARCHAR)")
    conn.executemany("INSERT INTO marts.compliance_gaps VALUES (?, ?)", rows)
    (check,) = unique_key_checks("marts.compliance_gaps")
    return check, check.result(conn)


def test_unique_check_fails_on_a_planted_duplicate_and_names_it(tmp_path):
    # GAP-1 twice, GAP-2 three times, GAP-3 once: two ids name more than one row.
    rows = [("GAP-1", "a"), ("GAP-2", "a"), ("GAP-1", "b"), ("GAP-2", "b"), ("GAP-2", "c"), ("GAP-3", "c")]
    check, result = _run_check(tmp_path, rows)
    spec = check.spec("marts.compliance_gaps")
    assert (spec.name, spec.blocking, result.check_name) == ("gap_ids_unique", True, "gap_ids_unique")
    assert result.passed is False
    assert result.metadata["duplicate_ids"].value == 2
    # Most-repeated first.
    assert result.metadata["first_duplicates"].value == "- GAP-2: 3 rows\n- GAP-1: 2 rows"


def test_unique_check_passes_on_distinct_ids(tmp_path):
    _, result = _run_check(tmp_path, [("GAP-1", "a"), ("GAP-2", "a")])
    assert result.passed is True
    assert result.metadata["duplicate_ids"].value == 0
    assert result.metadata["null_keys"].value == 0


def test_unique_check_fails_on_rows_without_a_key(tmp_path):
    # Two distinct ids and one row with no id at all: nothing repeats, one row cannot be named.
    _, result = _run_check(tmp_path, [("GAP-1", "a"), (None, "b"), ("GAP-2", "c")])
    assert result.passed is False
    assert result.metadata["null_keys"].value == 1
    assert result.metadata["duplicate_ids"].value == 0


def test_every_header_declaration_is_in_the_code_location():
    """A factory-made asset has exactly its header's deps, group and description, and every
    @unique line of a table in the code location has its blocking check (a module that forgets
    `unique_check_specs` fails here)."""
    from pipelines.definitions import defs

    definitions = defs()
    graph = definitions.get_repository_def().asset_graph
    checks = {(tuple(k.asset_key.path), k.name): graph.get_check_spec(k) for k in graph.asset_check_keys}
    made = set()
    for spec in definitions.resolve_all_asset_specs():
        schema, name = spec.key.path[0], spec.key.path[-1]
        if "sql" not in spec.kinds:  # not built from sql/ (a ledger table of the same name, ...)
            continue
        try:
            header = sql_header(name)
        except FileNotFoundError:
            continue
        if header.group:  # made by the factory
            made.add(f"{schema}.{name}")
            assert {"/".join(d.asset_key.path) for d in spec.deps} == {
                t.replace(".", "/") for t in header.depends}, spec.key
            assert spec.group_name == header.group
            assert spec.description == (header.summary or header.description)
        for unique in header.unique:
            check = checks.get(((schema, name), unique.check_name))
            assert check is not None and check.blocking, (spec.key, unique.check_name)
    # At least the plain marts of gaps, audit, baselines, rollback, population, update servers,
    # automatic updates and authorization (other modules may join).
    assert made >= {f"marts.{t}" for t in (
        "compliance_gaps", "audit_findings", "baseline_drift", "baseline_compliance",
        "vm_rollback_readiness", "rollback_findings", "azure_population_counts",
        "update_server_placement", "auto_update_periods", "auto_update_installs",
        "auto_update_findings", "authorization_events", "authorization_status",
        "authorization_findings", "rogue_patches", "authorization_install_findings",
        "patch_lifecycle")}


def test_factory_rejects_a_header_without_a_group():
    from pipelines.tables import sql_table_asset

    # sql/vm_inventory.sql is built by hand-written code (assets/inventory.py): no @group line.
    with pytest.raises(ValueError, match=r"sql/vm_inventory.sql: its header has no '-- @group' line"):
        sql_table_asset("marts.vm_inventory")



def _planted_rogue_inputs(database) -> None:
    conn = duckdb.connect(str(database))
    for schema in ("staging", "marts"):
        conn.execute(f"CREATE SCHEMA {schema}")
    conn.execute("CREATE TABLE staging.patch_observations "
                 "(vm_id VARCHAR, patch_key VARCHAR, state VARCHAR, observed_at TIMESTAMPTZ)")
    conn.executemany("INSERT INTO staging.patch_observations VALUES (?, ?, 'failed', ?)", [
        # KB1 failed on two machines, KB2 on three, before the evaluation date (2026-03-10) ...
        ("vm-a", "KB1", "2026-03-01 10:00:00+00"), ("vm-b", "KB1", "2026-03-02 10:00:00+00"),
        ("vm-a", "KB2", "2026-03-03 10:00:00+00"), ("vm-b", "KB2", "2026-03-03 11:00:00+00"),
        ("vm-c", "KB2", "2026-03-04 10:00:00+00"),
        # ... and KB1 on a third machine after it: not counted as of 2026-03-10.
        ("vm-c", "KB1", "2026-03-11 10:00:00+00"),
    ])
    conn.execute("CREATE TABLE staging.rollbacks "
                 "(vm_id VARCHAR, patch_key VARCHAR, rolled_back_at TIMESTAMPTZ, rollback_id VARCHAR)")
    conn.execute("CREATE TABLE staging.support_incidents "
                 "(vm_id VARCHAR, patch_key VARCHAR, opened_at TIMESTAMPTZ, incident_id VARCHAR)")
    conn.execute("CREATE TABLE marts.authorization_status "
                 "(patch_key VARCHAR, asset_category VARCHAR, environment VARCHAR, status VARCHAR)")
    conn.close()


@pytest.mark.parametrize(("run_config", "expected"), [
    ({}, [("KB2", 3)]),                       # RoguePatchConfig's default: three machines
    ({"min_vms": 2}, [("KB1", 2), ("KB2", 3)]),
])
def test_factory_asset_binds_run_config_and_the_evaluation_date(tmp_path, run_config, expected):
    import dagster as dg

    from assets.authorization import rogue_patches
    from pipelines.resources import RunSettings

    database = tmp_path / "w.duckdb"
    _planted_rogue_inputs(database)
    result = dg.materialize(
        [rogue_patches],
        resources={"warehouse": WarehouseResource(database=str(database)),
                   "run_settings": RunSettings(estate_dir=str(tmp_path), as_of="2026-03-10")},
        run_config={"ops": {rogue_patches.op.name: {"config": run_config}}} if run_config else None,
    )
    assert result.success
    (materialization,) = result.asset_materializations_for_node(rogue_patches.op.name)
    assert materialization.metadata["as_of"].value == "2026-03-10"
    assert materialization.metadata["dagster/row_count"].value == len(expected)
    conn = duckdb.connect(str(database), read_only=True)
    rows = conn.execute("SELECT patch_key, affected_vms FROM marts.rogue_patches ORDER BY ALL").fetchall()
    conn.close()
    assert rows == expected


# --- the skip of an unchanged build, and the checks in the asset's own step -------------------
# Planted SQL files in a folder of their own: staging.planted_input (loaded by the test) feeds
# marts.planted_keys (key `id`), which feeds marts.planted_as_of (which takes $as_of).
PLANTED_SQL = {
    "planted_keys": """\
-- @group planted
-- @depends staging.planted_input
-- @unique id as planted_id_unique: One row per id.
-- @table Planted keys.
SELECT id, amount * 2 AS doubled FROM staging.planted_input
""",
    "planted_as_of": """\
-- @group planted
-- @depends marts.planted_keys
-- @table Planted sum as of a date.
SELECT $as_of::DATE AS as_of, sum(doubled) AS total FROM marts.planted_keys
""",
    # Reads nothing of the others.
    "planted_constant": """\
-- @group planted
-- @table Planted: one constant row.
SELECT 42 AS answer
""",
    # Reads a Python asset that reads the keys: in a group with them, it needs a step of its own.
    "planted_after": """\
-- @group planted
-- @depends marts.planted_python
-- @table Planted: the Python asset's count plus one.
SELECT n + 1 AS n_plus_one FROM marts.planted_python
""",
}


@pytest.fixture
def planted(tmp_path, monkeypatch):
    """(materialize(rows, as_of) -> (result, metadata by table), database) over the planted SQL."""
    import dagster as dg

    from pipelines import warehouse
    from pipelines.resources import RunSettings, WarehouseResource
    from pipelines.tables import sql_table_asset

    folder = tmp_path / "sql"
    folder.mkdir()
    for name, text in PLANTED_SQL.items():
        (folder / f"{name}.sql").write_text(text, encoding="utf-8")
    monkeypatch.setattr(warehouse, "SQL_DIR", folder)
    for cached in (warehouse.read_sql, warehouse.sql_header):
        cached.cache_clear()
    database = tmp_path / "w.duckdb"
    assets = [sql_table_asset("marts.planted_keys"), sql_table_asset("marts.planted_as_of")]

    def materialize(rows: list[tuple] | None, as_of: str, definitions: list | None = None, selection=None):
        if rows is not None:  # else the input stays as it is
            with duckdb.connect(str(database)) as conn:
                conn.execute("CREATE SCHEMA IF NOT EXISTS staging")
                conn.execute("CREATE OR REPLACE TABLE staging.planted_input (id VARCHAR, amount INTEGER)")
                conn.executemany("INSERT INTO staging.planted_input VALUES (?, ?)", rows)
        result = dg.materialize(definitions or assets, selection=selection, resources={
            "warehouse": WarehouseResource(database=str(database)),
            "run_settings": RunSettings(estate_dir=str(tmp_path), as_of=as_of)}, raise_on_error=False)
        metadata = {}
        for event in result.get_asset_materialization_events():
            materialization = event.step_materialization_data.materialization
            metadata["/".join(materialization.asset_key.path)] = {
                k: v.value for k, v in materialization.metadata.items()}
        return result, metadata

    yield materialize, database
    for cached in (warehouse.read_sql, warehouse.sql_header):
        cached.cache_clear()


def test_an_unchanged_build_is_skipped_and_says_since_which_run(planted):
    materialize, database = planted
    first, built = materialize([("a", 1), ("b", 5)], "2026-11-30")
    assert first.success
    assert built["marts/planted_keys"]["unchanged"] is False
    assert built["marts/planted_as_of"]["unchanged"] is False
    # The same input rows, SQL and date: neither table is rebuilt, both say since the first run.
    second, kept = materialize([("a", 1), ("b", 5)], "2026-11-30")
    assert second.success
    for table in ("marts/planted_keys", "marts/planted_as_of"):
        assert kept[table]["unchanged"] is True, table
        assert kept[table]["unchanged_since_run"] == first.run_id, table
        assert kept[table]["inputs_fingerprint"] == built[table]["inputs_fingerprint"], table
        # The metadata is read from the table as it stands: 2 rows of keys, 1 row of sum.
        assert kept[table]["dagster/row_count"] == {"marts/planted_keys": 2, "marts/planted_as_of": 1}[table]
    assert [c.name for c in kept["marts/planted_keys"]["dagster/column_schema"].columns] == ["id", "doubled"]
    with duckdb.connect(str(database), read_only=True) as conn:
        # (1 + 5) * 2 = 12, as of the date asked for.
        assert conn.execute("SELECT as_of::VARCHAR, total FROM marts.planted_as_of").fetchall() == [("2026-11-30", 12)]
        runs = dict(conn.execute("SELECT target, dagster_run_id FROM staging.build_fingerprints").fetchall())
    assert runs == {"marts.planted_keys": first.run_id, "marts.planted_as_of": first.run_id}
    # The check of the key is evaluated on the unchanged table too.
    (evaluation,) = second.get_asset_check_evaluations()
    assert (evaluation.check_name, evaluation.passed) == ("planted_id_unique", True)


def test_a_changed_input_table_rebuilds_what_reads_it(planted):
    materialize, database = planted
    first, _ = materialize([("a", 1), ("b", 5)], "2026-11-30")
    # b's amount 5 -> 7: the keys are rebuilt, and so the sum that reads them.
    second, metadata = materialize([("a", 1), ("b", 7)], "2026-11-30")
    assert metadata["marts/planted_keys"]["unchanged"] is False
    assert metadata["marts/planted_as_of"]["unchanged"] is False
    with duckdb.connect(str(database), read_only=True) as conn:
        assert conn.execute("SELECT total FROM marts.planted_as_of").fetchall() == [((1 + 7) * 2,)]
        runs = dict(conn.execute("SELECT target, dagster_run_id FROM staging.build_fingerprints").fetchall())
    assert runs == {"marts.planted_keys": second.run_id, "marts.planted_as_of": second.run_id}


def test_a_moved_date_rebuilds_only_what_takes_as_of(planted):
    materialize, database = planted
    first, _ = materialize([("a", 1), ("b", 5)], "2026-11-30")
    second, metadata = materialize(None, "2026-12-01")
    # The keys' SQL takes no $as_of: unchanged. The sum's does: rebuilt for the new date.
    assert metadata["marts/planted_keys"]["unchanged"] is True
    assert metadata["marts/planted_keys"]["unchanged_since_run"] == first.run_id
    assert metadata["marts/planted_as_of"]["unchanged"] is False
    assert metadata["marts/planted_as_of"]["as_of"] == "2026-12-01"
    with duckdb.connect(str(database), read_only=True) as conn:
        assert conn.execute("SELECT as_of::VARCHAR, total FROM marts.planted_as_of").fetchall() == [("2026-12-01", 12)]


def test_a_failed_blocking_check_in_the_step_stops_what_reads_the_table(planted):
    """The key check runs in the step of marts.planted_keys: a planted duplicate fails it, and
    marts.planted_as_of, which reads the keys, does not run."""
    materialize, database = planted
    result, metadata = materialize([("a", 1), ("a", 2), ("b", 5)], "2026-11-30")
    assert not result.success
    (evaluation,) = result.get_asset_check_evaluations()
    assert (evaluation.check_name, evaluation.passed) == ("planted_id_unique", False)
    assert evaluation.metadata["first_duplicates"].value == "- a: 2 rows"
    assert "marts/planted_as_of" not in metadata
    assert [e.step_key for e in result.get_step_failure_events()] == ["marts__planted_keys"]
    with duckdb.connect(str(database), read_only=True) as conn:
        assert conn.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'planted_as_of'"
                            ).fetchall() == [(0,)]


def test_an_asset_with_a_before_rebuilds_every_time_unless_it_says_it_may_skip(planted, tmp_path):
    """What a `before` reads (here a file) is not in the fingerprint: such an asset rebuilds."""
    import dagster as dg

    from pipelines.resources import RunSettings, WarehouseResource
    from pipelines.tables import sql_table_asset

    _, database = planted  # the planted SQL folder is in place
    source = tmp_path / "amounts.csv"

    def load(conn, run_settings):
        conn.execute("CREATE SCHEMA IF NOT EXISTS staging")
        conn.execute("CREATE OR REPLACE TABLE staging.planted_input AS SELECT * FROM read_csv($p, header = false, "
                     "columns = {'id': 'VARCHAR', 'amount': 'INTEGER'})", {"p": str(source)})

    def run(asset) -> dict:
        result = dg.materialize([asset], resources={
            "warehouse": WarehouseResource(database=str(database)),
            "run_settings": RunSettings(estate_dir=str(tmp_path), as_of="2026-11-30")})
        (event,) = result.get_asset_materialization_events()
        return {k: v.value for k, v in event.step_materialization_data.materialization.metadata.items()}

    source.write_text("a,1\nb,5\n", encoding="utf-8")
    always = sql_table_asset("marts.planted_keys", before=load)
    assert "unchanged" not in run(always) and "unchanged" not in run(always)
    source.write_text("a,1\nb,7\n", encoding="utf-8")
    assert "unchanged" not in run(always)
    with duckdb.connect(str(database), read_only=True) as conn:
        assert conn.execute("SELECT id, doubled FROM marts.planted_keys ORDER BY id").fetchall() == [("a", 2), ("b", 14)]
    # Told that its `before` may skip, it does when the file (so the helper table) is as before.
    may_skip = sql_table_asset("marts.planted_keys", before=load, skip_unchanged=True)
    assert run(may_skip)["unchanged"] is False
    assert run(may_skip)["unchanged"] is True


# --- several tables in one step (what the code location does with the factory's tables) -------
def _planted_group(*names: str) -> list:
    from pipelines.tables import grouped, sql_table_asset

    return grouped([sql_table_asset(f"marts.{name}") for name in names])


def _steps(result) -> list[str]:
    return list(dict.fromkeys(e.step_key for e in result.all_events if e.is_step_start))


def test_grouped_tables_build_in_one_step_each_with_its_own_materialization_and_check(planted):
    materialize, database = planted
    group = _planted_group("planted_keys", "planted_as_of")
    assert len(group) == 1
    result, metadata = materialize([("a", 1), ("b", 5)], "2026-11-30", group)
    assert result.success
    assert _steps(result) == ["sql_tables"]
    # Both tables materialized, each with its own metadata: 2 rows of keys, 1 row of sum.
    assert metadata["marts/planted_keys"]["dagster/row_count"] == 2
    assert metadata["marts/planted_as_of"]["dagster/row_count"] == 1
    assert metadata["marts/planted_as_of"]["as_of"] == "2026-11-30"
    (evaluation,) = result.get_asset_check_evaluations()
    assert (evaluation.asset_key.path, evaluation.check_name, evaluation.passed) == (
        ["marts", "planted_keys"], "planted_id_unique", True)
    with duckdb.connect(str(database), read_only=True) as conn:
        # Built in dependency order in the step: the sum read the keys just built, (1 + 5) * 2.
        assert conn.execute("SELECT total FROM marts.planted_as_of").fetchall() == [(12,)]
    # Skip-unchanged per table: a moved date rebuilds the sum only, as in steps of their own.
    second, kept = materialize(None, "2026-12-01", group)
    assert kept["marts/planted_keys"]["unchanged"] is True
    assert kept["marts/planted_keys"]["unchanged_since_run"] == result.run_id
    assert kept["marts/planted_as_of"]["unchanged"] is False


def test_a_failed_blocking_check_stops_what_reads_the_table_in_the_same_step(planted):
    """The keys and the sum that reads them in one step: a planted duplicate key fails the
    keys' blocking check, the sum is not built (nor materialized), and the step fails."""
    materialize, database = planted
    result, metadata = materialize([("a", 1), ("a", 2), ("b", 5)], "2026-11-30",
                                   _planted_group("planted_keys", "planted_as_of"))
    assert not result.success
    (evaluation,) = result.get_asset_check_evaluations()
    assert (evaluation.check_name, evaluation.passed) == ("planted_id_unique", False)
    assert evaluation.metadata["first_duplicates"].value == "- a: 2 rows"
    assert list(metadata) == ["marts/planted_keys"]
    assert [e.step_key for e in result.get_step_failure_events()] == ["sql_tables"]
    with duckdb.connect(str(database), read_only=True) as conn:
        assert conn.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'planted_as_of'"
                            ).fetchall() == [(0,)]


def test_a_failed_build_stops_what_reads_it_the_rest_of_the_step_builds(planted):
    """The keys' input is missing: their build fails (rolled back), the sum that reads them is
    not built, the constant that reads neither is, and the step fails with the build's error."""
    materialize, database = planted
    result, metadata = materialize(None, "2026-11-30", _planted_group("planted_keys", "planted_as_of",
                                                                      "planted_constant"))
    assert not result.success
    assert list(metadata) == ["marts/planted_constant"]
    (failure,) = result.get_step_failure_events()
    assert failure.step_key == "sql_tables"
    cause = failure.step_failure_data.error.cause  # the build's own error, as in a step of its own
    assert cause.cls_name == "CatalogException" and "planted_input" in cause.message
    with duckdb.connect(str(database), read_only=True) as conn:
        assert conn.execute("SELECT answer FROM marts.planted_constant").fetchall() == [(42,)]
        assert conn.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'marts' "
                            "ORDER BY ALL").fetchall() == [("planted_constant",)]


def test_a_selection_of_one_grouped_table_builds_only_it(planted):
    import dagster as dg

    materialize, database = planted
    group = _planted_group("planted_keys", "planted_as_of")
    first, _ = materialize([("a", 1), ("b", 5)], "2026-11-30", group)
    # Input and date changed, only the sum selected: the keys stay as built (a: 2, b: 10).
    second, metadata = materialize([("a", 1), ("b", 7)], "2026-12-01", group,
                                   selection=[dg.AssetKey(["marts", "planted_as_of"])])
    assert second.success
    assert list(metadata) == ["marts/planted_as_of"]
    assert second.get_asset_check_evaluations() == []  # the keys' check was not selected
    with duckdb.connect(str(database), read_only=True) as conn:
        assert conn.execute("SELECT id, doubled FROM marts.planted_keys ORDER BY id").fetchall() == [("a", 2), ("b", 10)]
        assert conn.execute("SELECT as_of::VARCHAR, total FROM marts.planted_as_of").fetchall() == [("2026-12-01", 12)]


def test_a_python_asset_between_grouped_tables_splits_the_group_into_steps(planted):
    """keys -> Python asset -> after, all three tables in one group: Dagster's job builder runs
    the group in two steps (keys and sum, then after), around the Python asset, not in a cycle."""
    import dagster as dg


    @dg.asset(key=["marts", "planted_python"], deps=[dg.AssetKey(["marts", "planted_keys"])])
    def planted_python(warehouse: WarehouseResource) -> None:
        with warehouse.get_connection() as conn:
            conn.execute("CREATE OR REPLACE TABLE marts.planted_python AS SELECT count(*) AS n FROM marts.planted_keys")

    materialize, database = planted
    group = _planted_group("planted_keys", "planted_as_of", "planted_after")
    result, metadata = materialize([("a", 1), ("b", 5), ("c", 2)], "2026-11-30", [*group, planted_python])
    assert result.success
    steps = _steps(result)
    assert len(steps) == 3 and steps[1] == "marts__planted_python", steps
    tables = {}
    for event in result.get_asset_materialization_events():
        tables.setdefault(event.step_key, []).append("/".join(event.asset_key.path))
    assert sorted(tables[steps[0]]) == ["marts/planted_as_of", "marts/planted_keys"]
    assert tables[steps[2]] == ["marts/planted_after"]
    with duckdb.connect(str(database), read_only=True) as conn:
        # Three keys counted by the Python asset, plus one.
        assert conn.execute("SELECT n_plus_one FROM marts.planted_after").fetchall() == [(4,)]


def test_the_registers_load_in_one_step_and_a_bad_one_keeps_its_last_good_table(tmp_path):
    """Two registers of the code location's `registers` family, in one step: a bad date in the
    blackout dates fails its load (last good table kept) and the step; the rollbacks load."""
    from fixtures_registers import materialize as materialize_registers
    from fixtures_registers import query, write_register

    from pipelines.sources.registers import assets as register_assets
    from pipelines.tables import grouped

    estate = tmp_path / "estate"
    group = grouped([register_assets.blackout_dates, register_assets.rollbacks])
    assert len(group) == 1

    def rollback(rollback_id: str) -> dict:
        return {"rollback_id": rollback_id, "vm_id": "vm-a", "patch_key": "KB5001",
                "rolled_back_at": "2026-10-01T10:00:00Z"}

    write_register(estate, "blackout_dates", [{"blackout_id": "b1", "starts_on": "2026-12-24", "ends_on": "2026-12-26"}])
    write_register(estate, "rollbacks", [rollback("r1")])
    first = materialize_registers(group, tmp_path, estate)
    assert _steps(first) == ["registers"]
    write_register(estate, "blackout_dates", [{"blackout_id": "b2", "starts_on": "24/12/2026", "ends_on": "2026-12-26"}])
    write_register(estate, "rollbacks", [rollback("r1"), rollback("r2")])
    second = materialize_registers(group, tmp_path, estate, raise_on_error=False)
    assert not second.success
    assert ["/".join(e.asset_key.path) for e in second.get_asset_materialization_events()] == ["staging/rollbacks"]
    assert query(tmp_path, "SELECT blackout_id FROM staging.blackout_dates") == [("b1",)]
    assert query(tmp_path, "SELECT rollback_id FROM staging.rollbacks ORDER BY ALL") == [("r1",), ("r2",)]
