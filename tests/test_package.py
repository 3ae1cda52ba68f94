"""The installed package is complete (a wheel carries sql/, the templates and the config) and a
package that loads no assets is an error, not an empty code location."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pipelines.definitions import load_packages

REPO = Path(__file__).resolve().parents[1]
SOURCES = ["pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "pipelines", "assets", "sql"]

# Run in the installed copy only: from a scratch folder, the installed dir first on sys.path.
PROBE = textwrap.dedent("""
    import json, sys
    import assets, pipelines
    from pipelines import settings
    from pipelines.definitions import defs
    from pipelines.reporting.document import TEMPLATES
    from pipelines.warehouse import read_sql
    definitions = defs()
    print(json.dumps({
        "pipelines": pipelines.__file__, "assets": assets.__file__,
        "sql_dir": str(settings.SQL_DIR),
        "compliance_gaps_sql": read_sql("compliance_gaps"),
        "sql_files": len(list(settings.SQL_DIR.glob("*.sql"))),
        "templates": sorted(p.name for p in TEMPLATES.iterdir()),
        "dagster_yaml": (settings.PROJECT_ROOT / "pipelines/config/dagster.yaml").is_file(),
        "dagster_home": str(settings.default_dagster_home()),
        "assets_loaded": len(list(definitions.resolve_all_asset_keys())),
    }))
""")


def _clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PATCHLEDGER_")}
    return {**env, **extra}


def test_wheel_install_carries_sql_templates_and_config(tmp_path):
    source = tmp_path / "src"
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            source.mkdir(exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    # setuptools is pinned in requirements.lock: no build isolation, no network.
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "-w", str(tmp_path / "dist"), str(source)], check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("patchledger-*.whl")
    installed = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target",
                    str(installed), str(wheel)], check=True, capture_output=True)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=scratch, capture_output=True, text=True,
                         env=_clean_env(PYTHONPATH=str(installed), DAGSTER_HOME=str(tmp_path / "home")))
    assert out.returncode == 0, out.stderr[-3000:]
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert Path(found["pipelines"]).is_relative_to(installed)
    assert Path(found["assets"]).is_relative_to(installed)
    assert found["sql_dir"] == str(installed / "pipelines" / "sql")
    assert found["compliance_gaps_sql"] == (REPO / "sql" / "compliance_gaps.sql").read_text(encoding="utf-8")
    assert found["sql_files"] == len(list((REPO / "sql").glob("*.sql")))
    assert found["templates"] == sorted(p.name for p in (REPO / "pipelines/reporting/templates").iterdir())
    assert found["dagster_yaml"] is True
    # The run history goes to the working directory, not into the installed package.
    assert found["dagster_home"] == str(scratch.resolve() / ".dagster")
    assert found["assets_loaded"] > 50


def test_a_package_without_assets_is_an_error(tmp_path, monkeypatch):
    # A stray package of the same name as ours, with modules but no assets in them.
    stray = tmp_path / "stray_assets"
    stray.mkdir()
    (stray / "__init__.py").write_text('"""Not PatchLedger\'s."""\n')
    (stray / "helpers.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import stray_assets

    import assets as ours

    with pytest.raises(RuntimeError) as error:
        load_packages((ours, stray_assets))
    assert str(error.value).startswith("no assets found in package stray_assets (")
    assert str(stray / "__init__.py") in str(error.value)


def test_a_stray_assets_package_first_on_the_path_stops_the_code_location(tmp_path):
    stray = tmp_path / "assets"
    stray.mkdir()
    (stray / "__init__.py").write_text('"""Another project\'s assets package."""\n')
    out = subprocess.run([sys.executable, "-c", "from pipelines.definitions import defs; defs()"],
                         cwd=tmp_path, capture_output=True, text=True,
                         env=_clean_env(PYTHONPATH=os.pathsep.join([str(tmp_path), str(REPO)])))
    assert out.returncode != 0
    # Whichever import meets it first, the error names the stray package's file.
    assert str(stray / "__init__.py") in out.stderr, out.stderr[-2000:]
