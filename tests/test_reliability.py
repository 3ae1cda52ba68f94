"""Reliability guarantees, proven on a small generated estate run through the real CLI.

- idempotency: a rerun on the same inputs, or on the same files under shuffled/renamed/duplicated
  names, leaves every mart identical and adds no observation;
- crash safety: runs killed with SIGKILL at random points leave a warehouse that the next run
  completes to exactly the marts of an uninterrupted run on a fresh warehouse;
- concurrency: two `patchledger run` at once on one warehouse both succeed (the warehouse
  resource retries a locked file), a reader of the live file makes a writer wait and then fail
  with the "is locked by" message, and a reader of a copy of the file never blocks anything.

Known, by-design differences between runs (excluded below, column by column):
- marts.bulletin_channels.last_ingest_at / last_new_data_at / last_ingest_run and
  marts.patch_notifications.notified_at / notification_run / new_in_this_run record when and by
  which Dagster run something happened;
- the ledger's run ids (first_seen_run, run_id, first_detected_run) and notified_at.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import pytest

REPO = Path(__file__).resolve().parents[1]
CLI = REPO / ".venv" / "bin" / "patchledger"
SEED = 23

pytestmark = pytest.mark.slow

# Columns that record run times or run ids by design (see the module docstring).
RUN_COLUMNS = {
    "marts.bulletin_channels": ("last_ingest_at", "last_new_data_at", "last_ingest_run"),
    "marts.patch_notifications": ("notified_at", "notification_run", "new_in_this_run"),
    "ledger.authorization_events": ("first_seen_run",),
    "ledger.patch_tests": ("first_seen_run",),
    "ledger.exceptions": ("first_seen_run",),
    "ledger.chain_heads": ("run_id",),
    "ledger.notifications_sent": ("notified_at", "run_id"),
    "ledger.tamper_findings": ("first_detected_run",),
}
# Columns that differ between equivalent runs because of a known bug (none at present).
KNOWN_BUG_COLUMNS: dict[str, tuple[str, ...]] = {}


# ---------------------------------------------------------------- helpers


def cli_env(root: Path, **extra: str) -> dict[str, str]:
    """A clean environment for `patchledger`: its own DAGSTER_HOME (telemetry off), reports."""
    home = root / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PATCHLEDGER_", "AZURE_"))}
    env.update(DAGSTER_HOME=str(home), PATCHLEDGER_REPORTS=str(root / "reports"),
               PATCHLEDGER_SOURCE="files", PATCHLEDGER_DUCKDB_MEMORY="1GB")
    env.update(extra)
    return env


def run_cli(estate: Path, warehouse: Path, env: dict[str, str], timeout: float = 600):
    started = time.monotonic()
    done = subprocess.run(
        [str(CLI), "run", "--estate", str(estate), "--warehouse", str(warehouse)],
        env=env, capture_output=True, text=True, timeout=timeout, cwd=warehouse.parent,
    )
    return done, time.monotonic() - started


def assert_ok(done: subprocess.CompletedProcess) -> None:
    assert done.returncode == 0, f"patchledger run failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


def table_digests(path: Path, schemas=("marts", "ledger"), exclude=None) -> dict[str, tuple[int, str]]:
    """{schema.table: (rows, md5 of the sorted rows)} without the excluded columns."""
    exclude = exclude or {}
    conn = duckdb.connect(str(path), read_only=True)
    try:
        tables = conn.execute(
            "SELECT schema_name, table_name FROM duckdb_tables() WHERE schema_name IN "
            f"({', '.join('?' for _ in schemas)}) ORDER BY ALL", list(schemas)
        ).fetchall()
        digests = {}
        for schema, name in tables:
            table = f"{schema}.{name}"
            columns = [
                c for (c,) in conn.execute(
                    "SELECT column_name FROM duckdb_columns() WHERE schema_name = ? AND "
                    "table_name = ? ORDER BY column_index", [schema, name]).fetchall()
                if c not in exclude.get(table, ())
            ]
            projection = ", ".join(f'"{c}"' for c in columns)
            rows, digest = conn.execute(
                f"SELECT count(*), md5(coalesce(string_agg(t::VARCHAR, '|' ORDER BY t::VARCHAR), '')) "
                f"FROM (SELECT {projection} FROM {table}) AS t"  # names from the catalog
            ).fetchall()[0]
            digests[table] = (rows, digest)
        return digests
    finally:
        conn.close()


def merged(*excludes: dict) -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    for exclude in excludes:
        for table, columns in exclude.items():
            out[table] = out.get(table, ()) + tuple(columns)
    return out


COMPARABLE = merged(RUN_COLUMNS, KNOWN_BUG_COLUMNS)


def differences(expected: dict, actual: dict) -> dict:
    return {t: (expected.get(t), actual.get(t)) for t in sorted(set(expected) | set(actual))
            if expected.get(t) != actual.get(t)}


def scalar(path: Path, sql: str):
    conn = duckdb.connect(str(path), read_only=True)
    try:
        return conn.execute(sql).fetchall()[0][0]
    finally:
        conn.close()


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def estate(tmp_path_factory) -> Path:
    from pipelines.demo.generator import generate_estate

    path = tmp_path_factory.mktemp("reliability") / "estate"
    generate_estate(path, vms=40, days=20, seed=SEED)
    return path


@pytest.fixture(scope="module")
def baseline(estate, tmp_path_factory):
    """One uninterrupted CLI run on a fresh warehouse: (pristine warehouse, digests, seconds)."""
    root = tmp_path_factory.mktemp("baseline")
    warehouse = root / "warehouse.duckdb"
    done, seconds = run_cli(estate, warehouse, cli_env(root))
    assert_ok(done)
    assert not Path(f"{warehouse}.wal").exists(), "a finished run leaves no WAL behind"
    digests = table_digests(warehouse, exclude=COMPARABLE)
    assert digests["marts.compliance_gaps"][0] > 0 and digests["marts.vm_patch_state"][0] > 0
    return warehouse, digests, seconds


def copy_warehouse(source: Path, target_dir: Path) -> Path:
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / "warehouse.duckdb"
    shutil.copyfile(source, target)
    return target


# ---------------------------------------------------------------- idempotency


def test_rerun_on_same_inputs_gives_identical_marts(estate, baseline, tmp_path):
    source, expected, _ = baseline
    warehouse = copy_warehouse(source, tmp_path)
    observations = scalar(warehouse, "SELECT count(*) FROM staging.patch_observations")
    done, _ = run_cli(estate, warehouse, cli_env(tmp_path))
    assert_ok(done)
    actual = table_digests(warehouse, exclude=COMPARABLE)
    assert differences(expected, actual) == {}
    assert sum(1 for t in actual if t.startswith("marts.")) >= 20
    assert scalar(warehouse, "SELECT count(*) FROM staging.patch_observations") == observations
    # The second run notified nothing new and appended nothing to the ledger.
    assert scalar(warehouse, "SELECT count(*) FROM marts.patch_notifications WHERE new_in_this_run") == 0
    assert scalar(warehouse, "SELECT count(DISTINCT first_seen_run) FROM ledger.authorization_events") == 1


def _renamed_estate(estate: Path, target: Path) -> tuple[Path, int]:
    """The same files under shuffled names, plus three files copied under a second name."""
    shutil.copytree(estate, target)
    shuffle = random.Random(SEED)
    moves = [
        (target / "azure" / "resource_graph", "patchassessmentresources", "patchassessmentresources"),
        (target / "azure" / "resource_graph", "patchinstallationresources", "patchinstallationresources"),
        (target / "log_analytics", "Update_", "Update"),
    ]
    renamed = 0
    for folder, prefix, table in moves:
        files = sorted(p for p in folder.iterdir() if p.name.startswith(prefix))
        order = list(range(len(files)))
        shuffle.shuffle(order)
        for path, position in zip(files, order, strict=True):
            path.rename(folder / f"{table}-export{position:03d}{path.suffix}")
            renamed += 1
    rg, la = target / "azure" / "resource_graph", target / "log_analytics"
    for folder, name in ((rg, "patchassessmentresources-export004.json"),
                         (rg, "patchinstallationresources-export011.json"),
                         (la, "Update-export007.csv")):
        stem, suffix = name.rsplit(".", 1)
        shutil.copyfile(folder / name, folder / f"{stem}-replayed-again.{suffix}")
    return target, renamed


def test_replaying_renamed_and_duplicated_files_adds_no_duplicates(estate, baseline, tmp_path):
    source, expected, _ = baseline
    renamed, count = _renamed_estate(estate, tmp_path / "renamed_estate")
    assert count >= 50  # 20 + 20 Resource Graph days and 20 Log Analytics days
    warehouse = copy_warehouse(source, tmp_path / "wh")
    before = table_digests(warehouse, schemas=("marts", "staging"))
    raw_tables = ("raw.patch_assessment_resources", "raw.patch_installation_resources",
                  "raw.la_update")
    raw_before = {t: scalar(warehouse, f"SELECT count(*) FROM {t}") for t in raw_tables}
    done, _ = run_cli(renamed, warehouse, cli_env(tmp_path))
    assert_ok(done)
    after = table_digests(warehouse, schemas=("marts", "staging"))
    # Raw tables accumulate; a file whose SHA-256 is already held under another name (a rename,
    # a copy) adds nothing (pipelines/ingest/files.py) ...
    assert {t: scalar(warehouse, f"SELECT count(*) FROM {t}") for t in raw_tables} == raw_before
    assert min(raw_before.values()) > 100
    # ... and deduplicated: same observations, same row count in every mart.
    assert after["staging.patch_observations"][0] == before["staging.patch_observations"][0] > 1000
    # The population table lists the estate's Resource Graph files: the two copies are two more
    # files, each complete, its rows counted from the content already held under its first name.
    population = "marts.azure_population_counts"
    assert after[population][0] == before[population][0] + 2
    assert scalar(warehouse, f"SELECT count(*) FROM {population} WHERE source_file LIKE '%-replayed-again.json' "
                             "AND complete") == 2
    assert scalar(warehouse, f"SELECT loaded_rows > 100 FROM {population} "
                             "WHERE source_file LIKE '%patchassessmentresources-export004-replayed-again.json'")
    assert scalar(warehouse, f"SELECT count(*) FROM {population} WHERE NOT complete") == 0
    counts_before = {t: v[0] for t, v in before.items() if t.startswith("marts.") and t != population}
    counts_after = {t: v[0] for t, v in after.items() if t.startswith("marts.") and t != population}
    assert counts_after == counts_before
    # Apart from the file names themselves, the marts have the same content.
    source_file_columns = {t: ("source_file",) for t in after}
    content = merged(COMPARABLE, source_file_columns)
    differing = differences(table_digests(source, exclude=content), table_digests(warehouse, exclude=content))
    assert set(differing) <= {population}


def test_bulletin_channels_as_of_comes_from_the_data(baseline):
    warehouse = baseline[0]
    data_day = scalar(warehouse, "SELECT max(observed_at)::DATE FROM staging.patch_observations")
    assert scalar(warehouse, "SELECT max(as_of) FROM marts.compliance_gaps") == data_day
    assert scalar(warehouse, "SELECT max(as_of) FROM marts.bulletin_channels") == data_day


def test_last_assessment_source_does_not_depend_on_row_order(baseline, tmp_path):
    """Log Analytics Update and UpdateSummary give some machines the same newest assessed_at:
    marts.vm_inventory must break the tie the same way whatever the row order (it did not:
    arg_max(source, assessed_at) made reruns differ)."""
    from assets.monitoring import STALE_AFTER_DAYS
    from pipelines.warehouse import build_table

    warehouse = copy_warehouse(baseline[0], tmp_path)
    conn = duckdb.connect(str(warehouse))
    try:
        conn.execute("SET threads = 1")  # one thread: the row order alone decides
        conn.execute("SET TimeZone = 'UTC'")
        tied = [vm for (vm,) in conn.execute("""
            WITH newest AS (
                SELECT vm_id, source FROM staging.assessment_runs WHERE succeeded
                QUALIFY assessed_at = max(assessed_at) OVER (PARTITION BY vm_id))
            SELECT vm_id FROM newest GROUP BY vm_id HAVING count(DISTINCT source) > 1
            ORDER BY vm_id""").fetchall()]
        assert len(tied) >= 1, "the estate has machines whose two sources report the same time"
        as_of = conn.execute("SELECT max(as_of) FROM marts.vm_inventory").fetchall()[0][0]
        conn.execute("CREATE TABLE main.runs_copy AS SELECT * FROM staging.assessment_runs")
        chosen = []
        for direction in ("ASC", "DESC"):
            conn.execute("CREATE OR REPLACE TABLE staging.assessment_runs AS "
                         f"SELECT * FROM main.runs_copy ORDER BY source {direction}, vm_id, assessed_at")
            build_table(conn, "marts.vm_inventory",
                        params={"as_of": as_of, "stale_after_days": STALE_AFTER_DAYS})
            chosen.append(conn.execute(
                "SELECT vm_id, last_assessment_source FROM marts.vm_inventory "
                "WHERE vm_id IN (SELECT unnest(?)) ORDER BY vm_id", [tied]).fetchall())
    finally:
        conn.close()
    assert chosen[0] == chosen[1]


# ---------------------------------------------------------------- crash safety


def finished_steps(instance, earlier: set[str] = frozenset()) -> int:
    """Steps the newest run of `instance` not in `earlier` has finished so far (0 before it is
    recorded). Read while that run writes: a busy storage counts as 0 until the next look."""
    import dagster as dg

    try:
        runs = [r for r in instance.get_runs(limit=len(earlier) + 1) if r.run_id not in earlier]
        if not runs:
            return 0
        return len(instance.get_records_for_run(
            runs[0].run_id, of_type=dg.DagsterEventType.STEP_SUCCESS, limit=100_000).records)
    except Exception:  # noqa: BLE001 (sqlite busy while the run writes: look again)
        return 0


def test_sigkill_at_random_points_then_rerun_matches_a_fresh_run(estate, baseline, tmp_path):
    import dagster as dg

    source, expected, _ = baseline
    warehouse = tmp_path / "warehouse.duckdb"
    env = cli_env(tmp_path)
    # The kill points are counted in steps, not seconds, so that a machine slower or faster than
    # when the baseline ran moves them with the run: each kill lands after a random number of
    # finished steps within the first 80 % of a run, plus a random fraction of a second.
    with dg.DagsterInstance.from_config(str(source.parent / "dagster_home")) as instance:
        steps = finished_steps(instance)
    assert steps > 20, steps
    draw = random.Random(SEED)
    points = [(after, draw.randrange(0, 5) / 10) for after in draw.sample(range(1, int(steps * 0.8)), 3)]
    killed_at = []
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        for attempt, (after, tenths) in enumerate(points):
            earlier = {r.run_id for r in instance.get_runs()}
            log = tmp_path / f"killed-{attempt}.out"
            with log.open("w") as out:
                process = subprocess.Popen(
                    [str(CLI), "run", "--estate", str(estate), "--warehouse", str(warehouse)],
                    env=env, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path)
                deadline = time.monotonic() + 600
                while process.poll() is None and finished_steps(instance, earlier) < after:
                    assert time.monotonic() < deadline, f"the run never reached step {after}"
                    time.sleep(0.1)
                time.sleep(tenths)
                finished = process.poll() is not None
                if not finished:
                    os.kill(process.pid, signal.SIGKILL)
                assert process.wait(timeout=30) == (0 if finished else -signal.SIGKILL)
            killed_at.append((after, tenths, finished))
    assert sum(1 for *_, finished in killed_at if not finished) >= 2, killed_at
    done, _ = run_cli(estate, warehouse, env)
    assert_ok(done)
    assert differences(expected, table_digests(warehouse, exclude=COMPARABLE)) == {}, killed_at
    # The chain verifies after the crashes: no half-written ledger append.
    from pipelines.ledger import verify_ledger

    conn = duckdb.connect(str(warehouse), read_only=True)
    try:
        assert verify_ledger(conn) == []
    finally:
        conn.close()


# ---------------------------------------------------------------- concurrency

_READER = textwrap.dedent("""
    import sys, time, duckdb
    path, hold, mode = sys.argv[1], float(sys.argv[2]), sys.argv[3]
    conn = duckdb.connect(path, read_only=True)
    print("open", flush=True)
    worst, queries, end = 0.0, 0, time.monotonic() + hold
    while time.monotonic() < end:
        started = time.monotonic()
        queries += conn.execute("SELECT count(*) FROM marts.compliance_gaps").fetchall()[0][0] > 0
        worst = max(worst, time.monotonic() - started)
        if mode == "held":  # hold the file until told (a line on stdin), however long that takes
            sys.stdin.readline()
            break
        if mode == "idle":
            time.sleep(hold)
        else:
            time.sleep(0.2)
    conn.close()
    print(f"closed {queries} {worst:.3f}", flush=True)
""")


def start_reader(path: Path, hold: float = 3600, mode: str = "query") -> subprocess.Popen:
    reader = subprocess.Popen([sys.executable, "-c", _READER, str(path), str(hold), mode],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert reader.stdout.readline().strip() == "open", reader.stderr.read()
    return reader


def test_two_runs_at_once_both_succeed_and_a_copy_reader_never_blocks(
        estate, baseline, tmp_path, monkeypatch):
    source, expected, typical = baseline
    published = copy_warehouse(source, tmp_path / "published")  # what analysts read
    reader = start_reader(published, hold=typical / 2)
    warehouse = tmp_path / "warehouse.duckdb"
    envs = [cli_env(tmp_path / "shared")] * 2  # one DAGSTER_HOME, as on a real host
    # Initialise the Dagster storage first, as any host that ran once has: two first-ever runs
    # racing to create the sqlite schema fail with "table alembic_version already exists".
    import dagster as dg

    monkeypatch.setenv("DAGSTER_HOME", envs[0]["DAGSTER_HOME"])
    with dg.DagsterInstance.get() as instance:
        assert list(instance.get_runs()) == []
    started = time.monotonic()
    processes = [
        subprocess.Popen([str(CLI), "run", "--estate", str(estate), "--warehouse", str(warehouse)],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         cwd=tmp_path)
        for env in envs
    ]
    outputs = [p.communicate(timeout=900) for p in processes]
    elapsed = time.monotonic() - started
    for process, (out, err) in zip(processes, outputs, strict=True):
        # Both succeed: each asset retries the locked file; a failure must name the lock.
        assert process.returncode == 0 or "is locked by" in err, f"{out[-2000:]}\n{err[-2000:]}"
    assert [p.returncode for p in processes] == [0, 0], [o[1][-500:] for o in outputs]
    # The copy was queried all along while the runs wrote the original.
    closing = reader.stdout.readline().split()
    assert reader.wait(timeout=60) == 0
    assert closing[0] == "closed" and int(closing[1]) >= 5 and float(closing[2]) < 5.0, closing
    assert differences(expected, table_digests(warehouse, exclude=COMPARABLE)) == {}
    assert elapsed < 6 * typical + 60
    # Both runs are recorded as successful in the shared run storage.
    with dg.DagsterInstance.get() as instance:
        statuses = [r.status for r in instance.get_runs()]
    assert statuses == [dg.DagsterRunStatus.SUCCESS] * 2


class FakeClock:
    """Stands in for `time` in pipelines.resources: a sleep moves the clock on at once, so a
    writer's wait for the lock takes no real time and its length is known exactly, whatever the
    machine's load. `on_sleep(n)` runs after the n-th sleep."""

    def __init__(self, on_sleep=None):
        self.now, self.slept, self.on_sleep = 1000.0, [], on_sleep

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        if self.on_sleep is not None:
            self.on_sleep(len(self.slept))


def _use_clock(monkeypatch, clock: FakeClock) -> None:
    from pipelines import resources

    monkeypatch.setattr(resources, "time", clock)


def _materialize_one(monkeypatch, warehouse: Path, estate: Path, lock_timeout: float):
    import dagster as dg

    monkeypatch.setenv("PATCHLEDGER_ESTATE", str(estate))
    monkeypatch.setenv("PATCHLEDGER_WAREHOUSE", str(warehouse))
    monkeypatch.setenv("PATCHLEDGER_SOURCE", "files")
    monkeypatch.delenv("PATCHLEDGER_AS_OF", raising=False)
    from pipelines.definitions import defs

    job = defs().resolve_implicit_global_asset_job_def()
    return job.execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), raise_on_error=False,
        asset_selection=[dg.AssetKey(["staging", "sla_policy"])],
        run_config={"resources": {"warehouse": {"config": {
            "database": str(warehouse), "lock_timeout_seconds": lock_timeout}}}},
    )


def _error_chain(event) -> list[str]:
    """A step failure's error and its causes, as 'class: message'."""
    messages, error = [], event.step_failure_data.error
    while error is not None:
        messages.append(f"{error.cls_name}: {error.message}")
        error = error.cause
    return messages


def _failure_messages(result) -> list[str]:
    return [m for event in result.all_events if event.is_step_failure for m in _error_chain(event)]


def test_reader_of_the_live_file_makes_a_writer_fail_fast_with_the_locked_message(
        estate, baseline, tmp_path, monkeypatch):
    warehouse = copy_warehouse(baseline[0], tmp_path)
    clock = FakeClock()
    _use_clock(monkeypatch, clock)
    reader = start_reader(warehouse, mode="held")  # holds the file until killed
    try:
        result = _materialize_one(monkeypatch, warehouse, estate, lock_timeout=2.0)
    finally:
        reader.kill()
        reader.wait()
    assert not result.success
    messages = _failure_messages(result)
    assert any(f"is locked by process {reader.pid}" in m for m in messages), messages
    assert any("WarehouseLockedError" in m for m in messages), messages
    # Retried with doubling waits until 2 s had passed (0.25, 0.75, 1.75, then 3.75 >= 2), then
    # gave up: the timeout, not a hang, and not the first refusal.
    assert clock.slept == [0.25, 0.5, 1.0, 2.0]


def test_reader_of_the_live_file_closing_in_time_lets_the_writer_through(
        estate, baseline, tmp_path, monkeypatch):
    warehouse = copy_warehouse(baseline[0], tmp_path)
    reader = start_reader(warehouse, mode="held")

    def release(sleeps: int) -> None:  # after the writer's second wait, the reader closes
        if sleeps == 2:
            reader.stdin.write("close\n")
            reader.stdin.flush()
            assert reader.stdout.readline().startswith("closed")  # the file is free from here

    clock = FakeClock(on_sleep=release)
    _use_clock(monkeypatch, clock)
    try:
        result = _materialize_one(monkeypatch, warehouse, estate, lock_timeout=60.0)
    finally:
        assert reader.wait(timeout=60) == 0
    assert result.success, _failure_messages(result)
    # Refused twice while the reader held the file, through at the third try, 0.75 s in.
    assert clock.slept == [0.25, 0.5]
    assert scalar(warehouse, "SELECT count(*) FROM staging.sla_policy") > 0


def test_a_whole_run_gives_up_within_the_lock_timeout(estate, baseline, tmp_path, monkeypatch):
    """After one step has waited the whole timeout, the run's other warehouse steps fail at once
    rather than each waiting again."""
    import dagster as dg

    from pipelines.definitions import defs
    from pipelines.partitions import every_day

    warehouse = copy_warehouse(baseline[0], tmp_path)
    for name, value in {"PATCHLEDGER_ESTATE": estate, "PATCHLEDGER_WAREHOUSE": warehouse,
                        "PATCHLEDGER_SOURCE": "files", "PATCHLEDGER_LEDGER": tmp_path / "ledger",
                        "PATCHLEDGER_REPORTS": tmp_path / "reports"}.items():
        monkeypatch.setenv(name, str(value))
    monkeypatch.delenv("PATCHLEDGER_AS_OF", raising=False)
    clock = FakeClock()
    _use_clock(monkeypatch, clock)
    reader = start_reader(warehouse, mode="held")
    try:
        result = defs().resolve_job_def("full_refresh").execute_in_process(
            instance=dg.DagsterInstance.ephemeral(), raise_on_error=False, tags=every_day(),
            run_config={"resources": {"warehouse": {"config": {
                "database": str(warehouse), "lock_timeout_seconds": 1.0}}}})
    finally:
        reader.kill()
        reader.wait()
    assert not result.success
    locked = [e for e in result.all_events if e.is_step_failure
              and any(f"is locked by process {reader.pid}" in m for m in _error_chain(e))]
    assert len(locked) >= 2, _failure_messages(result)
    # One wait of the whole second in the run (0.25, 0.75, then 1.75 >= 1), none after it.
    assert clock.slept == [0.25, 0.5, 1.0]


def test_cli_prints_the_locked_message(estate, baseline, tmp_path, monkeypatch):
    """`patchledger run` in process, its job narrowed to one asset and its lock timeout to 1 s."""
    import dagster as dg
    from typer.testing import CliRunner

    from pipelines import cli, jobs, resources, schedules, sensors

    warehouse = copy_warehouse(baseline[0], tmp_path)
    original = resources.default_resources

    def short_lock():
        found = original()
        found["warehouse"] = resources.WarehouseResource(database=str(warehouse),
                                                         lock_timeout_seconds=1.0)
        return found

    monkeypatch.setattr(resources, "default_resources", short_lock)
    monkeypatch.setattr(schedules, "all_schedules", lambda: [])  # they name the real job
    monkeypatch.setattr(sensors, "all_sensors", lambda: [])
    monkeypatch.setattr(jobs, "all_jobs", lambda: [dg.define_asset_job(
        "full_refresh", selection=dg.AssetSelection.assets(dg.AssetKey(["staging", "sla_policy"])))])
    for name, value in cli_env(tmp_path).items():
        if name.startswith(("PATCHLEDGER_", "DAGSTER_")):
            monkeypatch.setenv(name, value)
    reader = start_reader(warehouse, mode="held")
    try:
        outcome = CliRunner().invoke(
            cli.app, ["run", "--estate", str(estate), "--warehouse", str(warehouse)])
    finally:
        reader.kill()
        reader.wait()
    assert outcome.exit_code == 1
    # Dagster's own log dumps the whole error chain; the CLI's summary line is what users read.
    summary = " ".join(outcome.output.split("Step staging__sla_policy failed:")[-1].split())
    assert summary.startswith(f"The warehouse {warehouse} is locked by process {reader.pid}"), summary
