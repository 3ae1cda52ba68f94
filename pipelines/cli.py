"""The `patchledger` command line: generate, run, demo, report, verify."""

from __future__ import annotations

import os
import sys
from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from pipelines import settings

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="PatchLedger: patch-management compliance analytics for Azure VMs (Dagster + DuckDB).",
)
console = Console(stderr=False, highlight=False)
err = Console(stderr=True, highlight=False, soft_wrap=True)  # paths in errors stay whole


def _ensure_dagster_home() -> Path:
    """Runs launched here must show in the UI: use the project's DAGSTER_HOME, telemetry off."""
    from filelock import FileLock

    home = Path(os.environ.get("DAGSTER_HOME") or settings.default_dagster_home()).resolve()
    home.mkdir(parents=True, exist_ok=True)
    os.environ["DAGSTER_HOME"] = str(home)
    # Two first runs at once would race to create the instance's storage: create it under a lock.
    with FileLock(str(home / ".init.lock")):
        config = home / "dagster.yaml"
        if not config.exists():
            config.write_text((settings.PROJECT_ROOT / "pipelines/config/dagster.yaml").read_text())
        import dagster as dg

        dg.DagsterInstance.get().dispose()
    return home


def _set_env(name: str, value: str | Path | None) -> None:
    if value is not None and str(value) != "":
        os.environ[name] = str(Path(value).resolve()) if isinstance(value, Path) else str(value)


@app.command()
def generate(
    out: Annotated[Path, typer.Option(help="Folder to write the estate into.")] = Path("data/estate"),
    vms: Annotated[int, typer.Option(min=1, help="Number of Azure VMs.")] = 200,
    days: Annotated[int, typer.Option(min=1, help="Days of history.")] = 90,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same bytes.")] = 7,
    start: Annotated[str | None, typer.Option(help="First day YYYY-MM-DD (default: ends 2026-11-27).")] = None,
) -> None:
    """Write a synthetic, deterministic demo estate in the real source formats."""
    from pipelines.demo.generator import generate_estate

    start_date = _parse_date(start, "--start") if start else None
    with console.status(f"Generating {vms} VMs x {days} days into {out} ..."):
        summary = generate_estate(out, vms=vms, days=days, seed=seed, start=start_date)
    console.print(str(summary))


def _parse_date(value: str, option: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        err.print(f"[red]{option} must be a date YYYY-MM-DD, not {value!r}[/red]")
        raise typer.Exit(2) from None


@app.command()
def run(
    estate: Annotated[Path | None, typer.Option(help="Estate folder (PATCHLEDGER_ESTATE).")] = None,
    warehouse: Annotated[Path | None, typer.Option(help="DuckDB file (PATCHLEDGER_WAREHOUSE).")] = None,
    as_of: Annotated[str | None, typer.Option(help="Evaluation date YYYY-MM-DD (default: newest data).")] = None,
    source: Annotated[str | None, typer.Option(help="'files' (estate folder) or 'azure' (live).")] = None,
    out: Annotated[Path | None, typer.Option(
        help="Folder for the evidence pack (PATCHLEDGER_REPORTS; default: reports/ beside the warehouse).")] = None,
    verify_files: Annotated[bool, typer.Option(
        "--verify-files", help="Hash every estate file, not only those whose size or mtime changed "
        "(PATCHLEDGER_VERIFY_FILES).")] = False,
) -> None:
    """Materialize the days that are new or touched (every day of the data on a first run) and every table
    after them through Dagster; exits non-zero on the first error."""
    _set_env("PATCHLEDGER_REPORTS", out)
    if verify_files:
        _set_env("PATCHLEDGER_VERIFY_FILES", "true")
    ok = _run_pipeline(estate, warehouse, as_of, source)
    if not ok:
        raise typer.Exit(1)
    _print_summary()


def _run_pipeline(estate, warehouse, as_of, source) -> bool:
    import warnings

    # The daily partitions use Dagster's beta backfill policy and preview partitioned checks.
    warnings.filterwarnings("ignore", message=r".*is currently in (beta|preview)")
    if as_of:
        _parse_date(as_of, "--as-of")
    _set_env("PATCHLEDGER_ESTATE", estate)
    _set_env("PATCHLEDGER_WAREHOUSE", warehouse)
    _set_env("PATCHLEDGER_AS_OF", as_of)
    _set_env("PATCHLEDGER_SOURCE", source)
    if settings.source_mode() == "files" and not settings.estate_dir().is_dir():
        err.print(
            f"[red]No estate folder at {settings.estate_dir()}.[/red] Run `patchledger generate` "
            "for a demo estate, or point --estate / PATCHLEDGER_ESTATE at your exports."
        )
        return False
    _ensure_dagster_home()
    if not _warehouse_available():
        return False

    import dagster as dg

    from pipelines import resources
    from pipelines.definitions import defs
    from pipelines.partitions import RANGE_END, RANGE_START
    from pipelines.resources import env_flag
    from pipelines.sources.scan_raw import touched_partitions

    definitions = defs()
    job = definitions.resolve_job_def("full_refresh")
    instance = dg.DagsterInstance.get()
    # The days that are new or touched (every day of the data on a first run), up to the as-of date.
    as_of_date = resources.default_resources()["run_settings"].as_of_date()
    tags, why = touched_partitions(settings.estate_dir(), settings.warehouse_path(), as_of_date,
                                   verify=env_flag("PATCHLEDGER_VERIFY_FILES"))
    console.print(
        f"Running [bold]full_refresh[/bold] for the days {tags[RANGE_START]} to {tags[RANGE_END]} ({why}): "
        f"estate {settings.estate_dir()} -> warehouse {settings.warehouse_path()}"
    )
    result = _execute_with_progress(job, instance, tags)
    _print_steps(result)
    _print_recomputed(result)
    if not result.success:
        for event in result.all_events:
            if event.is_step_failure:
                error = event.step_failure_data.error
                # Skip Dagster's wrappers down to the project's (or the library's) own error.
                while error is not None and error.cls_name.startswith("Dagster") and error.cause:
                    error = error.cause
                err.print(f"[red]Step {event.step_key} failed:[/red] {error.message.strip() if error else ''}")
                break
        else:
            err.print("[red]The run failed; see the Dagster UI (make ui) for the event log.[/red]")
        err.print(f"Run id {result.run_id} (recorded in {os.environ['DAGSTER_HOME']}).")
        return False
    return True


def _execute_with_progress(job, instance, tags: dict):
    """Run the job in a worker thread and follow its steps in the event log with a progress bar."""
    import threading
    import uuid

    from dagster import DagsterEventType
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    run_id = str(uuid.uuid4())
    outcome: dict = {}

    def execute() -> None:
        try:
            outcome["result"] = job.execute_in_process(
                instance=instance, run_id=run_id, raise_on_error=False, tags=tags,
                run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
            )
        except BaseException as exc:  # reported below, in the main thread
            outcome["error"] = exc

    total = len(job.graph.nodes)  # one step per op: assets, multi-assets and checks
    done_types = {DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE, DagsterEventType.STEP_SKIPPED}
    worker = threading.Thread(target=execute, daemon=True)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=True) as progress:
        task = progress.add_task("materializing", total=total)
        worker.start()
        cursor, finished = None, 0
        while worker.is_alive():
            worker.join(timeout=0.5)
            # Only the step events since the last look (a run of many partitions logs many events).
            found = instance.get_records_for_run(run_id, cursor=cursor, of_type=done_types)
            cursor = found.cursor or cursor
            if found.records:
                finished += len(found.records)
                last = found.records[-1].event_log_entry.dagster_event.step_key or ""
                progress.update(task, completed=min(finished, total), description=last[:40])
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def _warehouse_available() -> bool:
    """Fail fast, once, when another process holds the warehouse (rather than in every step)."""
    from pipelines import resources

    warehouse = resources.default_resources()["warehouse"]
    try:
        resources.connect_warehouse(warehouse.database,
                                    lock_timeout_seconds=warehouse.lock_timeout_seconds).close()
    except resources.WarehouseLockedError as exc:
        err.print(f"[red]{exc}[/red]")
        return False
    return True


def _print_steps(result) -> None:
    table = Table(title=None, show_edge=False, box=None, pad_edge=False)
    table.add_column("asset")
    table.add_column("rows", justify="right")
    seen = set()
    for event in result.get_asset_materialization_events():
        materialization = event.step_materialization_data.materialization
        name = materialization.asset_key.to_user_string()
        if materialization.asset_key.path[0] not in ("marts", "reports") or name in seen:
            continue  # raw, staging and ledger are in the UI; a partitioned table once, not per day
        seen.add(name)
        rows = materialization.metadata.get("dagster/row_count")
        table.add_row(name, f"{rows.value:,}" if rows else "")
    console.print(table)


def _print_recomputed(result) -> None:
    """What each table of the time chain recomputed, and why (from its materialization)."""
    seen = set()
    for event in result.get_asset_materialization_events():
        materialization = event.step_materialization_data.materialization
        name = materialization.asset_key.to_user_string()
        meta = materialization.metadata
        start = meta.get("increment/recomputed_from") or meta.get("trend/recomputed_from")
        if start is None or name in seen:
            continue
        seen.add(name)
        reason = meta.get("increment/reason") or meta.get("trend/reason")
        what = "nothing recomputed" if start.value == "no day" else f"recomputed from {start.value}"
        console.print(f"  {name}: {what} ({reason.value if reason else ''})")


def _print_summary() -> None:
    from pipelines.summary import compliance_summary

    lines = compliance_summary(str(settings.warehouse_path()))
    console.print("\n".join(lines))


@app.command()
def report(
    as_of: Annotated[str | None, typer.Option(help="Evaluation date YYYY-MM-DD (default: the warehouse's).")] = None,
    out: Annotated[Path | None, typer.Option(
        help="Folder for the reports (PATCHLEDGER_REPORTS; default: reports/ beside the warehouse).")] = None,
    warehouse: Annotated[Path | None, typer.Option(help="DuckDB file (PATCHLEDGER_WAREHOUSE).")] = None,
    estate: Annotated[Path | None, typer.Option(help="Estate folder to rebuild a past date from (PATCHLEDGER_ESTATE).")] = None,
    as_known_then: Annotated[bool, typer.Option(
        "--as-known-then", help="The pack as it would have been written on the date: only the scan files and "
        "register rows that had arrived by its end (folder <date>-as-known-then).")] = False,
) -> None:
    """Write the evidence pack for a date: from the warehouse when its marts are of that date,
    else rebuilt as of that date from the estate and the first-recorded ledger (as corrected
    since, late arrivals listed; or, with --as-known-then, from what had arrived by then)."""
    from pipelines.pastdate import PastDateError, marts_as_of, rebuild_pack
    from pipelines.reporting import write_reports
    from pipelines.resources import connect_warehouse

    _set_env("PATCHLEDGER_WAREHOUSE", warehouse)
    _set_env("PATCHLEDGER_ESTATE", estate)
    as_of_date = _parse_date(as_of, "--as-of") if as_of else None
    path = settings.warehouse_path()
    out_root = out or settings.reports_dir()
    built_for = None
    if path.exists():
        conn = connect_warehouse(str(path), read_only=True)
        try:
            built_for = marts_as_of(conn)
        finally:
            conn.close()
    elif as_of_date is None:
        err.print(f"[red]No warehouse at {path}.[/red] Run `patchledger run` first, or give --as-of "
                  "to rebuild a date from the estate.")
        raise typer.Exit(1)
    as_of_date = as_of_date or (built_for if as_known_then else None)
    try:
        if not as_known_then and (as_of_date is None or as_of_date == built_for):
            written = write_reports(str(path), out_root, as_of_date)
        else:
            console.print(f"The warehouse is as of {built_for or '(none)'}: rebuilding the marts as of "
                          f"{as_of_date}{' as known then' if as_known_then else ''} from "
                          f"{settings.estate_dir()} ...")
            written = rebuild_pack(as_of_date, estate=settings.estate_dir(), warehouse=path,
                                   ledger_dir=settings.ledger_dir(), out_root=out_root,
                                   known_then=as_known_then)
    except PastDateError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    for written_path in written:
        console.print(f"wrote {written_path}")


@app.command()
def verify(
    directory: Annotated[Path, typer.Argument(help="An evidence pack folder written by `report`.")],
    warehouse: Annotated[Path | None, typer.Option(help="DuckDB file whose ledger to verify.")] = None,
) -> None:
    """Re-check an evidence pack's manifest and the authorization ledger's hash chain."""
    from pipelines.verification import verify_all

    _set_env("PATCHLEDGER_WAREHOUSE", warehouse)
    problems = verify_all(directory, settings.warehouse_path())
    if problems:
        for problem in problems:
            err.print(f"[red]FAIL[/red] {problem}")
        raise typer.Exit(1)
    console.print(f"[green]OK[/green] {directory}: manifest hashes, counts and ledger chain verified")


@app.command()
def sample(
    directory: Annotated[Path, typer.Argument(help="An evidence pack folder written by `report`.")],
    population: Annotated[str, typer.Option(help="gaps, authorization_events, exceptions, ...")] = "gaps",
    size: Annotated[int, typer.Option(min=1, help="Rows to draw.")] = 25,
    seed: Annotated[int, typer.Option(help="Seed of the draw; record it in the workpapers.")] = 1,
    out: Annotated[Path | None, typer.Option(help="CSV to write (default: standard output).")] = None,
) -> None:
    """Draw a reproducible random sample of a population from a verified evidence pack."""
    import csv

    from pipelines.sampling import SampleError, draw_sample

    try:
        columns, rows = draw_sample(directory, population, size, seed)
    except SampleError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    handle = out.open("w", newline="", encoding="utf-8") if out else sys.stdout
    writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    if out:
        handle.close()
        console.print(f"{len(rows)} rows of {population} (seed {seed}) written to {out}")


@app.command("schema-doc")
def schema_doc(
    out: Annotated[Path, typer.Option(help="Markdown file to write.")] = Path("docs/warehouse.md"),
    warehouse: Annotated[Path | None, typer.Option(help="DuckDB file (PATCHLEDGER_WAREHOUSE).")] = None,
) -> None:
    """Write the table and column reference of the warehouse from its comments."""
    from pipelines.resources import connect_warehouse
    from pipelines.schema_doc import schema_markdown

    _set_env("PATCHLEDGER_WAREHOUSE", warehouse)
    conn = connect_warehouse(str(settings.warehouse_path()), read_only=True)
    try:
        out.write_text(schema_markdown(conn), encoding="utf-8")
    finally:
        conn.close()
    console.print(f"wrote {out}")


@app.command()
def demo(
    vms: Annotated[int, typer.Option(min=1, help="Number of Azure VMs in the demo estate.")] = 200,
    days: Annotated[int, typer.Option(min=1, help="Days of history.")] = 90,
    regenerate: Annotated[bool, typer.Option(help="Rewrite the estate even if it exists.")] = False,
) -> None:
    """Generate the demo estate (if absent), run everything, write the reports, print a summary."""
    from pipelines.demo.generator import generate_estate

    estate = settings.estate_dir()
    if regenerate or not (estate / "demo_truth.json").exists():
        with console.status(f"Generating the demo estate ({vms} VMs x {days} days) ..."):
            console.print(str(generate_estate(estate, vms=vms, days=days)))
    if not _run_pipeline(estate, None, None, "files"):
        raise typer.Exit(1)
    console.print()
    console.print(f"[bold]Estate[/bold]     {estate}")
    console.print(f"[bold]Warehouse[/bold]  {settings.warehouse_path()}")
    for path in sorted(settings.reports_dir().glob("*/compliance-report.*")):
        console.print(f"[bold]Report[/bold]     {path}")
    for path in sorted(settings.reports_dir().glob("*/dashboard.html")):
        console.print(f"[bold]Dashboard[/bold]  {path}")
    console.print(f"[bold]Analysts[/bold]   {settings.published_path()} (read-only copy)")
    console.print("[bold]UI[/bold]         make ui  (then open http://127.0.0.1:3000)")
    console.print()
    _print_summary()


def main() -> None:  # pragma: no cover - console entry point
    sys.exit(app())
