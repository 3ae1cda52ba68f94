"""The code location loads, and its shape is what the UI and the schedules rely on."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from assets import common
from pipelines.definitions import defs
from pipelines.schedules import is_patch_tuesday

REPO = Path(__file__).resolve().parents[1]


def test_definitions_load():
    definitions = defs()
    dg.Definitions.validate_loadable(definitions)
    assert definitions.resolve_job_def("full_refresh") is not None


def test_every_asset_is_described_grouped_and_owned():
    graph = defs().resolve_asset_graph()
    stages = {v for k, v in vars(common).items() if k.startswith(("STAGE", "EVIDENCE", "PUBLICATION"))}
    for asset_key in graph.get_all_asset_keys():
        node = graph.get(asset_key)
        assert node.description, f"{asset_key} has no description"
        assert node.group_name in stages, f"{asset_key} is in group {node.group_name}"
        assert node.owners == common.OWNERS, asset_key


def test_patch_tuesday_is_the_second_tuesday():
    from datetime import date

    tuesdays = [date(2026, 11, d) for d in (3, 10, 17, 24)]
    assert [is_patch_tuesday(d) for d in tuesdays] == [False, True, False, False]
    assert is_patch_tuesday(date(2026, 12, 8)) and not is_patch_tuesday(date(2026, 12, 1))


def test_dg_check_defs(tmp_path):
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    dg_bin = Path(sys.executable).parent / "dg"
    done = subprocess.run([str(dg_bin), "check", "defs"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "All definitions loaded successfully" in done.stdout + done.stderr


def test_every_asset_has_kinds():
    graph = defs().resolve_asset_graph()
    without = [k.to_user_string() for k in graph.get_all_asset_keys() if not graph.get(k).kinds]
    assert without == []


def _spec_shape(spec: dg.AssetSpec) -> tuple:
    return (spec.group_name, spec.description, frozenset(spec.kinds), tuple(spec.owners),
            frozenset(d.asset_key for d in spec.deps))


def test_grouping_the_sql_tables_keeps_every_asset_and_check():
    """The factory's tables build several to a step; the code location still has every asset and
    check of the modules' own assets, each with the same spec, and fewer steps."""
    from assets.publish import published_warehouse
    from pipelines import resources
    from pipelines.definitions import ASSET_PACKAGES, load_packages

    definitions = defs()
    ungrouped = [a for found in load_packages(ASSET_PACKAGES).values() for a in found]
    written = [k for a in ungrouped for k in a.keys if k.path[0] in resources.SCHEMAS]
    before = dg.Definitions(assets=[*ungrouped, published_warehouse(written)], asset_checks=[
        c for package in ASSET_PACKAGES for c in dg.load_asset_checks_from_package_module(package)],
        resources=resources.default_resources())
    graphs = {"before": before.resolve_asset_graph(), "after": definitions.resolve_asset_graph()}
    keys = {name: g.get_all_asset_keys() for name, g in graphs.items()}
    checks = {name: {k: g.get_check_spec(k) for k in g.asset_check_keys} for name, g in graphs.items()}
    assert len(keys["after"]) == len(keys["before"]) and keys["after"] == keys["before"]
    assert len(checks["after"]) == len(checks["before"])
    for check_key, spec in checks["before"].items():
        grouped = checks["after"][check_key]
        assert (grouped.blocking, grouped.description) == (spec.blocking, spec.description), check_key
    specs = {name: {s.key: s for s in d.resolve_all_asset_specs()} for name, d in
             (("before", before), ("after", definitions))}
    for asset_key, spec in specs["before"].items():
        assert _spec_shape(specs["after"][asset_key]) == _spec_shape(spec), asset_key
    # By hand: tables of the factory, one with run config, their checks.
    gaps, audit = dg.AssetKey(["marts", "compliance_gaps"]), dg.AssetKey(["marts", "audit_findings"])
    assert specs["after"][gaps].group_name == specs["after"][audit].group_name == common.STAGE6_MONITORING
    assert specs["after"][gaps].kinds == {"duckdb", "sql"}
    assert {dg.AssetKey(["marts", "vm_patch_state"]), dg.AssetKey(["staging", "sla_policy"])} <= {
        d.asset_key for d in specs["after"][gaps].deps}
    assert {dg.AssetCheckKey(gaps, "gap_ids_unique"), dg.AssetCheckKey(audit, "finding_ids_unique"),
            dg.AssetCheckKey(dg.AssetKey(["marts", "patch_catalog"]), "patch_catalog_key_unique")} <= set(
        checks["after"])
    assert checks["after"][dg.AssetCheckKey(gaps, "gap_ids_unique")].blocking
    # The gaps and the audit findings are one node; the rogue patches (run config) their own.
    after = graphs["after"]
    assert after.get(gaps).assets_def is after.get(audit).assets_def
    assert after.get(dg.AssetKey(["marts", "rogue_patches"])).assets_def.keys == {dg.AssetKey(["marts", "rogue_patches"])}
    # The registers load in one node of their own.
    registers = {after.get(dg.AssetKey(["staging", name])).assets_def for name in (
        "exceptions", "patch_tests", "baselines", "blackout_dates")}
    assert len(registers) == 1 and next(iter(registers)) is not after.get(gaps).assets_def


def test_the_daily_run_builds_the_sql_tables_in_fewer_steps():
    from dagster._core.execution.api import create_execution_plan

    definitions = defs()
    job = definitions.resolve_job_def("daily_refresh")
    steps = [s.key for s in create_execution_plan(job).get_all_steps_in_topo_order()]
    assert "marts__compliance_gaps" not in steps and "marts__audit_findings" not in steps
    assert "marts__rogue_patches" in steps  # run config of its own
    assert "registers" in steps and "staging__exceptions" not in steps
    # Tables of the group named by a Python asset between them run in a later step of it.
    grouped = [s for s in steps if s.startswith("sql_tables")]
    assert 2 <= len(grouped) < 10
    assert len(steps) < len(job.asset_layer.executable_asset_keys) - 10


def test_the_scheduled_audit_still_selects_only_what_the_audit_reads():
    """A subsettable group pulls in no neighbours: the audit's job has the tables upstream of it
    (the gaps), not the other tables of the group (the lifecycle, the baselines)."""
    definitions = defs()
    selected = definitions.resolve_job_def("scheduled_audit").asset_layer.executable_asset_keys
    assert {dg.AssetKey(["marts", "compliance_gaps"]), dg.AssetKey(["marts", "audit_findings"]),
            dg.AssetKey(["marts", "patch_catalog"]), dg.AssetKey(["published", "warehouse"])} <= selected
    assert not {dg.AssetKey(["marts", t]) for t in ("patch_lifecycle", "baseline_drift", "baseline_compliance")} & selected
