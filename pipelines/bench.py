"""`make bench`: the full pipeline at three estate sizes, beside DuckDB's own floor.

For each size (VMs x days) it generates an estate, runs `full_refresh` in process and records,
per asset: wall time, peak memory of the process while the step ran, rows out (and rows in:
the rows of its upstream tables), rows per second. The floor, measured in the same run on the
same files and warehouse: DuckDB's bulk read of each source (read_json / read_csv over the
files), and the bare SQL of every derived table executed directly. It reports the ratios
(pipeline / floor), Dagster's overhead (run wall minus step walls), the scaling exponent between
sizes, and for every size the daily run (one new day on the warehouse, the `daily_refresh` job
that the daily schedule launches: everything but the evidence pack) with its peak memory, and
the full run against DuckDB's bare read of the same files.

    python -m pipelines.bench [--runs 1000x90,1000x360,10000x90] [--out bench/out]
    python -m pipelines.bench [--sizes 100,1000,10000] [--days 90] [--out bench/out]

`--reuse-estate` keeps an estate already generated in `--out` for the same VMs x days (a 10,000-VM
estate takes minutes to write) and only removes what a previous run built from it;
`--log-level INFO` shows each step as it runs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path

import duckdb
import psutil

from pipelines import warehouse as warehouse_module

# Source families and how DuckDB alone reads them (the ingest floor), with the raw asset that
# loads the same files.
SOURCE_FLOORS = {
    "raw/patch_assessment_resources": (
        "azure/resource_graph/patchassessmentresources*.json",
        "SELECT unnest(data) AS r FROM read_json({glob}, columns={{'data': 'JSON[]'}}, "
        "maximum_object_size=1073741824)",
    ),
    "raw/patch_installation_resources": (
        "azure/resource_graph/patchinstallationresources*.json",
        "SELECT unnest(data) AS r FROM read_json({glob}, columns={{'data': 'JSON[]'}}, "
        "maximum_object_size=1073741824)",
    ),
    "raw/la_update": (
        "log_analytics/Update_*.csv",
        "SELECT * FROM read_csv({glob}, header=true, all_varchar=true)",
    ),
    "raw/la_update_summary": (
        "log_analytics/UpdateSummary*.json",
        "SELECT unnest(tables) AS t FROM read_json({glob}, columns={{'tables': 'JSON[]'}}, "
        "maximum_object_size=1073741824)",
    ),
    "raw/virtual_machines": (
        "azure/virtual_machines/virtual_machines-*.json",
        "SELECT json FROM read_json_objects({glob}, format='array', maximum_object_size=1073741824)",
    ),
}


@dataclass
class StepResult:
    asset: str
    seconds: float
    peak_rss_mb: float
    rows_out: int | None = None
    rows_in: int | None = None
    floor_seconds: float | None = None

    @property
    def rows_per_second(self) -> float | None:
        rows = max(self.rows_in or 0, self.rows_out or 0)
        return rows / self.seconds if self.seconds and rows else None


@dataclass
class SizeResult:
    vms: int
    days: int
    total_seconds: float = 0.0
    steps_seconds: float = 0.0
    peak_rss_mb: float = 0.0
    generate_seconds: float = 0.0
    steps: list[StepResult] = field(default_factory=list)
    sql: list[dict] = field(default_factory=list)
    incremental_seconds: float | None = None
    incremental_steps: list[StepResult] = field(default_factory=list)
    incremental_peak_rss_mb: float | None = None
    bare_read_seconds: float | None = None  # DuckDB's read of every scan and VM file, no checks


class MemorySampler(threading.Thread):
    """Samples this process's resident memory every 50 ms."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.samples: list[tuple[float, float]] = []
        self._halt = threading.Event()
        self._process = psutil.Process()

    def run(self) -> None:
        while not self._halt.is_set():
            self.samples.append((time.time(), self._process.memory_info().rss / 2**20))
            time.sleep(0.05)

    def stop(self) -> None:
        self._halt.set()
        self.join()

    def peak(self, start: float, end: float) -> float:
        inside = [mb for t, mb in self.samples if start - 0.05 <= t <= end + 0.05]
        return max(inside, default=0.0)


LOG_LEVEL = "ERROR"


def _run_pipeline(estate: Path, database: Path, reports: Path, job: str = "full_refresh") -> tuple[float, list, object, MemorySampler]:
    import dagster as dg

    os.environ.update({"PATCHLEDGER_ESTATE": str(estate), "PATCHLEDGER_WAREHOUSE": str(database),
                       "PATCHLEDGER_REPORTS": str(reports), "PATCHLEDGER_SOURCE": "files"})
    from pipelines.definitions import defs
    from pipelines.sources.scan_raw import touched_partitions

    definitions = defs()
    instance = dg.DagsterInstance.ephemeral()
    sampler = MemorySampler()
    sampler.start()
    started = time.perf_counter()
    result = definitions.resolve_job_def(job).execute_in_process(
        instance=instance, raise_on_error=True, tags=touched_partitions(estate, database)[0],
        run_config={"loggers": {"console": {"config": {"log_level": LOG_LEVEL}}}},
    )
    total = time.perf_counter() - started
    sampler.stop()
    return total, instance.all_logs(result.run_id), definitions, sampler


def _steps(records, definitions, sampler: MemorySampler) -> list[StepResult]:
    """Per-step wall time and peak memory from the event log; rows from materializations."""
    starts, results, rows = {}, {}, {}
    for record in records:
        event = record.dagster_event
        if event is None:
            continue
        if event.event_type_value == "STEP_START":
            starts[event.step_key] = record.timestamp
        elif event.event_type_value == "STEP_SUCCESS":
            results[event.step_key] = record.timestamp
        elif event.event_type_value == "ASSET_MATERIALIZATION":
            materialization = event.step_materialization_data.materialization
            count = materialization.metadata.get("dagster/row_count")
            rows[materialization.asset_key.to_user_string()] = count.value if count else None
    graph = definitions.resolve_asset_graph()
    by_step: dict[str, list[str]] = {}
    for asset_key in graph.get_all_asset_keys():
        step = "__".join(asset_key.path)
        by_step.setdefault(step, []).append(asset_key.to_user_string())
    steps = []
    for step, start in sorted(starts.items(), key=lambda kv: kv[1]):
        if step not in results:
            continue
        assets = by_step.get(step) or [step]
        out = sum(rows.get(a) or 0 for a in assets) if any(a in rows for a in assets) else None
        upstream = set()
        for a in assets:
            node_key = next((k for k in graph.get_all_asset_keys() if k.to_user_string() == a), None)
            if node_key is not None:
                upstream |= {p.to_user_string() for p in graph.get(node_key).parent_keys}
        rows_in = sum(rows.get(u) or 0 for u in upstream) or None
        steps.append(StepResult(asset=assets[0] if len(assets) == 1 else step, seconds=results[step] - start,
                                peak_rss_mb=sampler.peak(start, results[step]), rows_out=out, rows_in=rows_in))
    return steps


def _ingest_floor(estate: Path, glob: str, sql: str) -> float | None:
    files = sorted(estate.glob(glob))
    if not files:
        return None
    conn = duckdb.connect()
    quoted = "[" + ", ".join("'" + str(f).replace("'", "''") + "'" for f in files) + "]"
    started = time.perf_counter()
    conn.execute(f"CREATE TEMP TABLE floor AS {sql.format(glob=quoted)}")
    seconds = time.perf_counter() - started
    conn.close()
    return seconds


def _sql_floor(database: Path, recorded: list[dict]) -> None:
    """Run each derived table's bare SQL again, directly on the finished warehouse."""
    conn = duckdb.connect(str(database))
    conn.execute("SET TimeZone = 'UTC'")
    conn.execute("CREATE SCHEMA IF NOT EXISTS bench")
    warehouse_module.create_macros(conn)
    for entry in recorded:
        query = warehouse_module.read_sql(entry["sql_name"])
        started = time.perf_counter()
        try:
            conn.execute(f"CREATE OR REPLACE TABLE bench.floor AS {query}", entry["params"] or None)
        except duckdb.CatalogException:
            continue  # it reads a temporary table of its asset's own connection: no bare figure
        entry["bare_seconds"] = time.perf_counter() - started
    conn.execute("DROP SCHEMA bench CASCADE")
    conn.close()


def _hide_last_day(estate: Path, day: str, aside: Path) -> list[tuple[Path, Path]]:
    moved = []
    for path in sorted(estate.rglob(f"*{day}*")):
        if path.is_file():
            target = aside / path.relative_to(estate)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(path, target)
            moved.append((target, path))
    return moved


def _reusable_estate(root: Path, vms: int, days: int) -> date | None:
    """The last day of the estate already generated in `root` for vms x days (None: there is
    none), made whole again: the files a previous run set aside are put back and what it built
    (warehouse, ledger files, reports) removed."""
    truth = root / "estate" / "demo_truth.json"
    if not truth.exists():
        return None
    generator = json.loads(truth.read_text(encoding="utf-8"))["generator"]
    if (generator["vms"], generator["days"]) != (vms, days):
        return None
    aside = root / "last-day"
    for path in sorted(aside.rglob("*")) if aside.exists() else []:
        if path.is_file():
            target = root / "estate" / path.relative_to(aside)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(path, target)
    for built in ("last-day", "ledger", "reports", "warehouse.duckdb.tmp"):
        shutil.rmtree(root / built, ignore_errors=True)
    for built in root.glob("warehouse*.duckdb*"):
        built.unlink()
    return date.fromisoformat(generator["end"])


def bench_size(vms: int, days: int, out: Path, incremental: bool, reuse_estate: bool = False) -> SizeResult:
    from pipelines.demo.generator import generate_estate

    root = out / f"estate-{vms}x{days}"
    result = SizeResult(vms=vms, days=days)
    started = time.perf_counter()
    end = _reusable_estate(root, vms, days) if reuse_estate else None
    if end is None:
        shutil.rmtree(root, ignore_errors=True)
        end = generate_estate(root / "estate", vms=vms, days=days).end
    result.generate_seconds = time.perf_counter() - started
    recorded: list[dict] = []
    warehouse_module.sql_timing_recorder = lambda table, name, params, seconds: recorded.append(
        {"table": table, "sql_name": name, "params": params, "seconds": seconds})
    moved = []
    if incremental:  # the full run sees every day but the last; the incremental run adds it
        moved = _hide_last_day(root / "estate", end.isoformat(), root / "last-day")
    try:
        total, records, definitions, sampler = _run_pipeline(
            root / "estate", root / "warehouse.duckdb", root / "reports")
    finally:
        warehouse_module.sql_timing_recorder = None
    result.total_seconds = total
    result.steps = _steps(records, definitions, sampler)
    result.steps_seconds = sum(s.seconds for s in result.steps)
    result.peak_rss_mb = max((mb for _, mb in sampler.samples), default=0.0)
    result.bare_read_seconds = 0.0
    for asset, (glob, sql) in SOURCE_FLOORS.items():
        floor = _ingest_floor(root / "estate", glob, sql)
        result.bare_read_seconds += floor or 0.0
        for step in result.steps:
            if step.asset == asset:
                step.floor_seconds = floor
    _sql_floor(root / "warehouse.duckdb", recorded)
    result.sql = [{k: v for k, v in r.items() if k != "params"} for r in recorded]
    if incremental:
        for target, original in moved:
            shutil.move(target, original)
        result.incremental_seconds, records, definitions, sampler = _run_pipeline(
            root / "estate", root / "warehouse.duckdb", root / "reports", job="daily_refresh")
        result.incremental_steps = _steps(records, definitions, sampler)
        result.incremental_peak_rss_mb = max((mb for _, mb in sampler.samples), default=0.0)
    return result


def _exponent(a: SizeResult, b: SizeResult, attr: str = "total_seconds") -> float | None:
    ta, tb = getattr(a, attr), getattr(b, attr)
    if not ta or not tb or a.vms == b.vms or a.days != b.days:
        return None
    return math.log(tb / ta) / math.log(b.vms / a.vms)


def markdown(results: list[SizeResult]) -> str:
    lines = ["# PatchLedger benchmark", ""]
    lines.append("| VMs x days | total s | Dagster overhead | peak MB | ingest / floor | SQL / bare SQL | incremental / full | evidence pack s |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|")
    daily = ["", "| VMs x days | full run s | bare read s | full / bare read | daily run s | daily / full | "
             "full peak MB | daily peak MB |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        ratio = f"{r.total_seconds / r.bare_read_seconds:.2f}" if r.bare_read_seconds else "-"
        share = f"{r.incremental_seconds / r.total_seconds:.0%}" if r.incremental_seconds else "-"
        daily.append(f"| {r.vms:,} x {r.days} | {r.total_seconds:.1f} | {r.bare_read_seconds or 0:.1f} | {ratio} | "
                     f"{r.incremental_seconds or 0:.1f} | {share} | {r.peak_rss_mb:,.0f} | "
                     f"{r.incremental_peak_rss_mb or 0:,.0f} |")
    for a in results:  # the same fleet at a longer retention
        for b in results:
            if a.vms == b.vms and b.days > a.days and a.incremental_seconds and b.incremental_seconds:
                daily.append(f"\nDaily run at {b.vms:,} VMs, {b.days} days / {a.days} days of history: "
                             f"{b.incremental_seconds / a.incremental_seconds:.2f}x")
    for r in results:
        # The evidence pack (report, PDF, charts, dashboard, populations): the target is under a minute.
        pack = f"{sum(s.seconds for s in r.steps if s.asset.startswith('reports/')):.1f}"
        ingest = [s for s in r.steps if s.floor_seconds]
        ingest_ratio = (sum(s.seconds for s in ingest) / sum(s.floor_seconds for s in ingest)) if ingest else None
        sql_pipeline = sum(x["seconds"] for x in r.sql)
        sql_bare = sum(x.get("bare_seconds", 0) for x in r.sql)
        overhead = (r.total_seconds - r.steps_seconds) / r.total_seconds if r.total_seconds else 0
        incremental = f"{r.incremental_seconds / r.total_seconds:.2f}" if r.incremental_seconds else "-"
        lines.append(
            f"| {r.vms:,} x {r.days} | {r.total_seconds:.1f} | {overhead:.1%} | {r.peak_rss_mb:,.0f} | "
            f"{ingest_ratio:.2f} | {sql_pipeline / sql_bare:.2f} | {incremental} | {pack} |" if ingest_ratio and sql_bare else
            f"| {r.vms:,} x {r.days} | {r.total_seconds:.1f} | {overhead:.1%} | {r.peak_rss_mb:,.0f} | - | - | {incremental} | {pack} |"
        )
    lines += daily
    for a, b in zip(results, results[1:], strict=False):
        exponent = _exponent(a, b)
        if exponent is not None:
            lines.append(f"\nScaling exponent {a.vms:,} -> {b.vms:,} VMs: {exponent:.2f}")
    largest = results[-1]
    lines += ["", f"## Per asset at {largest.vms:,} VMs x {largest.days} days", "",
              "| asset | s | peak MB | rows in | rows out | rows/s | floor s | ratio |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for s in sorted(largest.steps, key=lambda s: -s.seconds)[:30]:
        ratio = f"{s.seconds / s.floor_seconds:.2f}" if s.floor_seconds else ""
        lines.append(
            f"| {s.asset} | {s.seconds:.2f} | {s.peak_rss_mb:,.0f} | {s.rows_in or ''} | {s.rows_out or ''} | "
            f"{s.rows_per_second or 0:,.0f} | {s.floor_seconds or '':.2f} | {ratio} |"
            if s.floor_seconds else
            f"| {s.asset} | {s.seconds:.2f} | {s.peak_rss_mb:,.0f} | {s.rows_in or ''} | {s.rows_out or ''} | "
            f"{s.rows_per_second or 0:,.0f} |  |  |"
        )
    if largest.incremental_seconds:
        pack = sum(s.seconds for s in largest.steps if s.asset.startswith("reports/"))
        same_scope = largest.total_seconds - pack
        lines += ["", f"Daily run (`daily_refresh`, one new day) at {largest.vms:,} VMs: "
                  f"{largest.incremental_seconds:.1f} s, {largest.incremental_seconds / largest.total_seconds:.0%} "
                  f"of the full run; {largest.incremental_seconds / same_scope:.0%} of the full run without "
                  f"the evidence pack ({same_scope:.1f} s)."]
    if largest.incremental_steps:
        lines += ["", f"## Daily incremental run at {largest.vms:,} VMs: slowest steps", "",
                  "| asset | s | share of full run's step |", "|---|---:|---:|"]
        full = {s.asset: s.seconds for s in largest.steps}
        for s in sorted(largest.incremental_steps, key=lambda s: -s.seconds)[:15]:
            share = f"{s.seconds / full[s.asset]:.0%}" if full.get(s.asset) else ""
            lines.append(f"| {s.asset} | {s.seconds:.2f} | {share} |")
    lines += ["", "| derived table | pipeline SQL s | bare SQL s | ratio |", "|---|---:|---:|---:|"]
    for x in sorted(largest.sql, key=lambda x: -x["seconds"])[:20]:
        bare = x.get("bare_seconds") or 0
        lines.append(f"| {x['table']} | {x['seconds']:.2f} | {bare:.2f} | {x['seconds'] / bare if bare else 0:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default=os.environ.get("BENCH_RUNS", "1000x90,1000x360,10000x90"),
                        help="estates as VMSxDAYS, comma-separated (ignored with --sizes)")
    parser.add_argument("--sizes", default=os.environ.get("BENCH_SIZES"))
    parser.add_argument("--days", type=int, default=int(os.environ.get("BENCH_DAYS", "90")))
    parser.add_argument("--out", type=Path, default=Path("bench/out"))
    parser.add_argument("--reuse-estate", action="store_true",
                        help="keep an estate of the same size already generated in --out")
    parser.add_argument("--log-level", default="ERROR", help="Dagster's console log level (INFO: every step)")
    args = parser.parse_args()
    global LOG_LEVEL
    LOG_LEVEL = args.log_level.upper()
    if args.sizes:
        runs = [(int(s), args.days) for s in args.sizes.split(",")]
    else:
        runs = [tuple(int(n) for n in run.split("x")) for run in args.runs.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    for vms, days in runs:
        print(f"bench: {vms:,} VMs x {days} days ...", flush=True)
        results.append(bench_size(vms, days, args.out, incremental=True, reuse_estate=args.reuse_estate))
        print(f"bench: {vms:,} VMs x {days} days done in {results[-1].total_seconds:.1f} s, "
              f"daily run {results[-1].incremental_seconds:.1f} s", flush=True)
    payload = [{**asdict(r), "steps": [{**asdict(s), "rows_per_second": s.rows_per_second} for s in r.steps],
                "incremental_steps": [asdict(s) for s in r.incremental_steps]}
               for r in results]
    (args.out / "results.json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
    text = markdown(results)
    (args.out / "results.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
