"""Incremental raw ingestion: a daily run reads only the new files, and gives the marts of a
full rebuild; a copied or renamed file adds nothing; a changed file replaces only its rows.

Every test runs twice: with everything in the DuckDB file, and in lake mode (pipelines/lake.py:
raw and staging as partitioned Parquet beside it), whose marts must equal the first mode's."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import dagster as dg
import duckdb
import pytest

RAW = ("raw.virtual_machines", "raw.patch_assessment_resources", "raw.patch_installation_resources",
       "raw.patch_operations", "raw.la_update", "raw.la_update_summary", "raw.la_update_run_progress")
COMPARED = ("staging.patch_observations", "staging.assessment_runs", "staging.vm_identity",
            "marts.vm_inventory", "marts.vm_patch_state", "marts.vm_patch_history", "marts.compliance_gaps",
            "marts.compliance_daily")
TARGETS = ("marts.vm_patch_state", "marts.vm_patch_history", "marts.compliance_gaps", "marts.vm_inventory",
           "marts.compliance_daily")


def lake_of(database: Path) -> Path:
    return database.with_name(database.stem + "-lake")


def _run(estate: Path, database: Path, tmp: Path, run_config: dict | None = None, lake: bool = False,
         targets: tuple[str, ...] = TARGETS, tags: dict | None = None):
    """Materialize `targets` and what they read, for the days `patchledger run` would run (or
    the partitions `tags` name); returns the run id and, per asset, its increment metadata and
    the partitions it recorded (`partitions`)."""
    env = {"PATCHLEDGER_ESTATE": str(estate), "PATCHLEDGER_WAREHOUSE": str(database),
           "PATCHLEDGER_REPORTS": str(tmp / "reports"), "PATCHLEDGER_SOURCE": "files"}
    saved = {k: os.environ.get(k) for k in [*env, "PATCHLEDGER_AS_OF", "PATCHLEDGER_LAKE"]}
    os.environ.update(env)
    os.environ.pop("PATCHLEDGER_AS_OF", None)
    if lake:
        os.environ["PATCHLEDGER_LAKE"] = str(lake_of(database))
    else:
        os.environ.pop("PATCHLEDGER_LAKE", None)
    try:
        from pipelines.definitions import defs
        from pipelines.sources.scan_raw import touched_partitions

        definitions = defs()
        keys = [dg.AssetKey(t.split(".")) for t in targets]
        selection = dg.AssetSelection.assets(*keys).upstream().required_multi_asset_neighbors().resolve(definitions.resolve_asset_graph())
        job = definitions.resolve_job_def("full_refresh")
        tags = tags or touched_partitions(estate, database)[0]
        result = job.execute_in_process(instance=dg.DagsterInstance.ephemeral(), asset_selection=list(selection),
                                        run_config=run_config, raise_on_error=True, tags=tags)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    metadata = {}
    for event in result.get_asset_materialization_events():
        m = event.step_materialization_data.materialization
        found = metadata.setdefault(m.asset_key.to_user_string(), {"partitions": []})
        found.update({k: v.value for k, v in m.metadata.items() if k.startswith(("ingest/", "trend/", "increment/"))})
        found["partitions"].append(m.partition)
    return result.run_id, metadata


# Columns allowed to differ between an incremental and a full run (none).
EXCLUDED: dict[str, str] = {}


def _hash(conn, table: str, exclude: str = "") -> tuple:
    cols = f" EXCLUDE ({exclude})" if exclude else ""
    return conn.execute(
        f"SELECT count(*), md5(coalesce(string_agg(t::VARCHAR, chr(10) ORDER BY t::VARCHAR), '')) "
        f"FROM (SELECT *{cols} FROM {table}) AS t").fetchall()[0]


def _hashes(database: Path) -> dict:
    with duckdb.connect(str(database), read_only=True) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        out = {t: _hash(conn, t, EXCLUDED.get(t, "")) for t in COMPARED}
        out.update({t: _hash(conn, t, "ingest_run") for t in RAW})
        return out


@pytest.fixture(scope="module", params=["warehouse", "lake"])
def mode(request):
    return request.param


@pytest.fixture(scope="module")
def estates(tmp_path_factory, mode):
    from pipelines.demo.generator import generate_estate

    lake = mode == "lake"
    root = tmp_path_factory.mktemp(f"incremental-{mode}")
    estate = root / "estate"
    summary = generate_estate(estate, vms=30, days=21, seed=5)
    day = summary.end.isoformat()
    aside = root / "aside"
    moved = []
    # The scan sources of the last day (bulletins and registers are other assets' business).
    for path in sorted([*(estate / "azure").rglob(f"*{day}*"), *(estate / "log_analytics").rglob(f"*{day}*")]):
        if path.is_file():
            target = aside / path.relative_to(estate)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(path, target)
            moved.append((target, path))
    assert any("log_analytics" in str(p) for _, p in moved) and any("resource_graph" in str(p) for _, p in moved)
    incremental = root / "incremental.duckdb"
    _run(estate, incremental, root, lake=lake)  # days 1-20
    for target, original in moved:
        shutil.move(target, original)
    run_id, metadata = _run(estate, incremental, root, lake=lake)  # day 21 added
    full = root / "full.duckdb"
    _run(estate, full, root, lake=lake)
    new_files = {p.relative_to(estate).as_posix() for _, p in moved}
    return root, estate, incremental, full, run_id, metadata, new_files


def test_only_new_files_are_read(estates):
    _, _, incremental, _, run_id, metadata, new_files = estates
    with duckdb.connect(str(incremental), read_only=True) as conn:
        read = set()
        for table in RAW:
            read |= {r[0] for r in conn.execute(
                f"SELECT DISTINCT source_file FROM {table} WHERE ingest_run = ?", [run_id]).fetchall()}
    assert read and read <= new_files  # a day without installations has an empty file
    files_read = sum(m.get("ingest/files_read", 0) for m in metadata.values())
    copies = sum(m.get("ingest/files_copies_skipped", 0) for m in metadata.values())
    # An empty day file can equal an earlier one byte for byte: it is then a copy, not read.
    assert files_read + copies == len(new_files) and files_read >= len(read)
    assert metadata["raw/patch_assessment_resources"]["ingest/files_unchanged"] == 20
    # The trend recomputes only the new day (and the previous one, whose last states it ends).
    trend = metadata["marts/compliance_daily"]
    assert trend["trend/reason"] == "new days"
    assert trend["trend/recomputed_from"] >= "2026-11-26"


# Content hashes of each mode's full run, to compare the modes.
FULL_HASHES: dict[str, dict] = {}


def test_marts_equal_a_full_rebuild(estates, mode):
    _, _, incremental, full, *_ = estates
    FULL_HASHES[mode] = _hashes(full)
    assert _hashes(incremental) == FULL_HASHES[mode]


def test_lake_gives_the_same_tables(estates, mode):
    """Raw, staging and marts read the same through the lake's views as from the DuckDB file."""
    if mode != "lake" or "warehouse" not in FULL_HASHES:
        pytest.skip("compares the lake run with the warehouse run of the same estate")
    assert FULL_HASHES["lake"] == FULL_HASHES["warehouse"]


def test_lake_layout(estates, mode):
    """One folder per source file under its day, named by the file's sha256; staging by
    observation day, each day in one folder; the warehouse holds views over them."""
    if mode != "lake":
        pytest.skip("lake mode only")
    from pipelines.ingest.files import sha256_file

    root, estate, incremental, *_ = estates
    lake = lake_of(incremental)
    source = sorted((estate / "azure" / "resource_graph").glob("patchassessmentresources*.json"))[-1]
    day = re.search(r"\d{4}-\d{2}-\d{2}", source.name).group(0)
    folder = lake / "raw" / "patch_assessment_resources" / f"day={day}" / f"file={sha256_file(source)}"
    assert [p.name for p in folder.iterdir()] == ["part_0.parquet"]
    days = sorted(p.name for p in (lake / "raw" / "la_update").iterdir())
    assert len(days) == 21 and days[-1] == f"day={day}"
    # The daily build wrote the days it recomputed as a new version beside the earlier days'
    # folders; every day is read from exactly one folder, and nothing unread is left.
    versions = list((lake / "staging" / "patch_observations").iterdir())
    day_folders = [d for v in versions for d in v.glob("day=*")]
    assert len(versions) == 2
    assert len({d.name for d in day_folders}) == len(day_folders)
    with duckdb.connect(str(incremental), read_only=True) as conn:
        kinds = dict(conn.execute(
            "SELECT table_schema || '.' || table_name, table_type FROM information_schema.tables "
            "WHERE table_schema IN ('raw', 'staging')").fetchall())
        observed_days = conn.execute(
            "SELECT count(DISTINCT observed_at::DATE) FROM staging.patch_observations").fetchall()[0][0]
    assert kinds["raw.la_update"] == kinds["staging.patch_observations"] == "VIEW"
    assert kinds["staging.vm_identity"] == "BASE TABLE"  # small staging tables stay in the file
    assert len(day_folders) == observed_days


def test_copy_rename_and_change(estates, tmp_path, mode):
    root, estate, incremental, full, *_ = estates
    lake = mode == "lake"
    database = tmp_path / "w.duckdb"
    shutil.copy(incremental, database)
    if lake:
        shutil.copytree(lake_of(incremental), lake_of(database))
    before = _hashes(database)
    # A copy and a rename add nothing.
    folder = estate / "azure" / "resource_graph"
    first = sorted(folder.glob("patchassessmentresources*.json"))[0]
    shutil.copy(first, folder / "patchassessmentresources-copy.json")
    updates = sorted((estate / "log_analytics").glob("Update_*.csv"))
    updates[0].rename(updates[0].with_name("Update_renamed.csv"))
    _, metadata = _run(estate, database, tmp_path, lake=lake)
    assert metadata["raw/patch_assessment_resources"]["ingest/files_copies_skipped"] == 1
    assert metadata["raw/la_update"]["ingest/files_copies_skipped"] == 1
    assert _hashes(database) == before
    # A changed file replaces only its own rows.
    changed = updates[1]
    lines = changed.read_text(encoding="utf-8-sig").splitlines(keepends=True)
    kept = lines[: max(2, len(lines) // 2)]
    changed.write_text("".join(kept), encoding="utf-8")
    name = changed.relative_to(estate).as_posix()
    with duckdb.connect(str(database), read_only=True) as conn:
        others = conn.execute("SELECT count(*) FROM raw.la_update WHERE source_file <> ?", [name]).fetchall()
    _, metadata = _run(estate, database, tmp_path, lake=lake)
    assert metadata["raw/la_update"]["ingest/files_replaced"] == 1
    assert metadata["raw/la_update"]["ingest/files_read"] == 1
    with duckdb.connect(str(database), read_only=True) as conn:
        assert conn.execute("SELECT count(*) FROM raw.la_update WHERE source_file = ?",
                            [name]).fetchall() == [(len(kept) - 1,)]
        assert conn.execute("SELECT count(*) FROM raw.la_update WHERE source_file <> ?",
                            [name]).fetchall() == others
    # A full reload rebuilds from the files present: the renamed file's rows now carry the new name.
    _run(estate, database, tmp_path, {"ops": {"raw__la_update": {"config": {"full_reload": True}}}}, lake=lake)
    with duckdb.connect(str(database), read_only=True) as conn:
        names = {r[0] for r in conn.execute("SELECT DISTINCT source_file FROM raw.la_update").fetchall()}
    assert "log_analytics/Update_renamed.csv" in names
    assert updates[0].relative_to(estate).as_posix() not in names
