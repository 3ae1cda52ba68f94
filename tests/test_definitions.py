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
