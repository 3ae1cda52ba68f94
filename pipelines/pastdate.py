"""Evidence packs for a past date: rebuilt as of that date, never relabelled.

The warehouse holds the marts of one evaluation date. A pack for another date D is rebuilt: a
scratch warehouse is materialized from the estate (every observation is kept there) and the
first-recorded ledger, with as_of = D, through the same Definitions as every other run, and the
pack is written from it. Every asset filters its inputs to what is dated by the end of D
(observations, register events, bulletins released, KEV additions), so nothing later leaks in.

The ledger is seeded from the live warehouse (its chain verified first) or, without one, from the
ledger files: controls are judged on the rows as first recorded, whatever the registers say now.

Two packs for D. As corrected since (the default): everything held now for D, with what arrived
after D for the days up to it listed in marts.late_arrivals and the findings. As known then
(`known_then=True`, folder `<D>-as-known-then`): only what had arrived by the end of D, the pack
that would have been written on D: the scan files that landed later are left out of the rebuild's
estate and the register rows that arrived later out of the registers' staging tables.

The rebuild reads a copy of the estate (hard links where possible) whose files carry the landing
times first recorded by the live warehouse, so the arrivals it derives are the ones recorded then,
even if a file was touched since.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

from pipelines.ledger import LEDGER_REGISTERS, append_ledger_file, ledger_file, verify_ledger
from pipelines.warehouse import table_exists


class PastDateError(RuntimeError):
    """A pack for the date cannot be produced truthfully; the message says why."""


def marts_as_of(conn) -> date | None:
    """The evaluation date the warehouse's marts were built for (None before any build)."""
    for table in ("marts.compliance_gaps", "marts.vm_inventory"):
        if table_exists(conn, table):
            found = conn.execute(f"SELECT max(as_of) FROM {table}").fetchall()[0][0]  # fixed names
            if found is not None:
                return found
    return None


def load_scan_arrivals(conn, run_settings=None) -> None:
    """The temporary table _scan_arrivals: every raw scan file version with its landing time, from
    raw.ingested_files (or, in lake mode, the lake's lists of files read); sql/late_arrivals.sql
    reads it."""
    from pipelines.ingest.files import ensure_manifest
    from pipelines.lake import current_lake
    from pipelines.sources.scan_raw import RAW_SCAN_TABLES
    from pipelines.warehouse import sql_literal

    lake = current_lake()
    if lake is None:
        ensure_manifest(conn)
        source = "SELECT * FROM raw.ingested_files"
    else:
        listings = [lake.ingested_list(t) for t in RAW_SCAN_TABLES]
        present = [sql_literal(p) for p in listings if lake.fs.exists(lake._fs_path(p))]
        lake.register(conn)
        source = (f"SELECT * FROM read_parquet([{', '.join(present)}], union_by_name = true)" if present
                  else "SELECT NULL::VARCHAR AS raw_table, NULL::VARCHAR AS source_file, "
                       "NULL::VARCHAR AS source_sha256, NULL::TIMESTAMPTZ AS landed_at WHERE false")
    conn.execute(
        "CREATE OR REPLACE TEMP TABLE _scan_arrivals AS SELECT raw_table, source_file, source_sha256, "
        f"CAST(landed_at AS TIMESTAMPTZ) AS landed_at FROM ({source}) WHERE raw_table IN (SELECT unnest($tables))",
        {"tables": list(RAW_SCAN_TABLES)},
    )


def first_observation(conn) -> date | None:
    """The UTC day of the earliest observation held (None: none)."""
    if not table_exists(conn, "staging.patch_observations"):
        return None
    return conn.execute(
        "SELECT CAST(timezone('UTC', min(observed_at)) AS DATE) FROM staging.patch_observations"
    ).fetchall()[0][0]


def _refuse_before_data(as_of: date, first: date | None, where: str) -> None:
    if first is None or as_of < first:
        raise PastDateError(
            f"No observation on or before {as_of} in {where}"
            + (f" (the first is of {first})" if first else "")
            + f": a pack for {as_of} would have no figures. Ask for a date from the first observation on."
        )


def _seed_ledger(as_of: date, warehouse: Path, ledger_dir: Path, scratch_ledger: Path) -> None:
    """The first-recorded rows for the rebuild: the warehouse's ledger (verified), else the files.
    A date before the warehouse's first observation is refused here, before any rebuild."""
    if warehouse.exists():
        from pipelines.resources import connect_warehouse

        conn = connect_warehouse(str(warehouse), read_only=True)
        try:
            if first_observation(conn) is not None:
                _refuse_before_data(as_of, first_observation(conn), f"the warehouse {warehouse}")
            problems = verify_ledger(conn)
            if problems:
                raise PastDateError(
                    f"The ledger of {warehouse} does not verify ({problems[0]}); a past-date pack "
                    "would rest on altered records. Run `patchledger verify` for the list."
                )
            for register in LEDGER_REGISTERS:
                if table_exists(conn, f"ledger.{register}"):
                    append_ledger_file(conn, register, scratch_ledger)
        finally:
            conn.close()
        return
    for register in LEDGER_REGISTERS:
        source = ledger_file(ledger_dir, register)
        if source.exists():
            scratch_ledger.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, ledger_file(scratch_ledger, register))


KNOWN_THEN_SUFFIX = "-as-known-then"


@contextmanager
def _file_mode():
    """The scratch run keeps everything in its own file: in lake mode (PATCHLEDGER_LAKE) it would
    otherwise write its raw Parquet into the live lake. The estate holds every file the lake
    was made from, so the rebuild is the same."""
    from pipelines.lake import LAKE_ENV

    saved = {k: os.environ.pop(k) for k in (LAKE_ENV, "PATCHLEDGER_EXECUTOR") if k in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def day_end(day: date) -> datetime:
    """The first instant after the day (UTC): what arrived before it had arrived by the day."""
    return datetime.combine(day + timedelta(days=1), time.min, tzinfo=UTC)


def pack_folder(as_of: date, known_by: datetime | None) -> str:
    return as_of.isoformat() + (KNOWN_THEN_SUFFIX if known_by is not None else "")


def _recorded_arrivals(warehouse: Path) -> dict[str, tuple[str, str, datetime | None]]:
    """file name -> (raw table, sha256, landing time) of every file version the live warehouse read."""
    if not warehouse.exists():
        return {}
    from pipelines.lake import current_lake
    from pipelines.resources import connect_warehouse

    conn = connect_warehouse(str(warehouse), read_only=True)
    try:
        found = []
        if table_exists(conn, "raw.ingested_files"):
            columns = {r[0] for r in conn.execute("DESCRIBE raw.ingested_files").fetchall()}
            landed = "landed_at" if "landed_at" in columns else "NULL::TIMESTAMPTZ"
            found += conn.execute(
                f"SELECT raw_table, source_file, source_sha256, {landed} FROM raw.ingested_files").fetchall()
        if current_lake() is not None:  # the scan files' list is the lake's
            load_scan_arrivals(conn)
            found += conn.execute("SELECT raw_table, source_file, source_sha256, landed_at FROM _scan_arrivals").fetchall()
        return {name: (table, sha, at) for table, name, sha, at in found}
    finally:
        conn.close()


def _copy_estate(estate: Path, target: Path, recorded: dict, known_by: datetime | None) -> list[str]:
    """Link every estate file into `target` with the landing time first recorded (a copy where
    that time differs from the file's own). With `known_by`, leave out the scan files that
    arrived at or after it (recorded landing time, else the file's own). Returns those left out."""
    from pipelines.ingest.files import landed_at, sha256_file
    from pipelines.sources.scan_raw import RAW_SCAN_TABLES

    scan_folders = {name.rsplit("/", 1)[0] for name, (table, _, _) in recorded.items() if table in RAW_SCAN_TABLES}
    left_out = []
    for path in sorted(p for p in estate.rglob("*") if p.is_file()):
        name = path.relative_to(estate).as_posix()
        table, sha, first_landed = recorded.get(name, (None, None, None))
        own = landed_at(path)
        arrived = first_landed if first_landed is not None and sha == sha256_file(path) else own
        scan = table in RAW_SCAN_TABLES or name.rsplit("/", 1)[0] in scan_folders
        if known_by is not None and scan and arrived >= known_by:
            left_out.append(name)
            continue
        copy = target / name
        copy.parent.mkdir(parents=True, exist_ok=True)
        if arrived != own:
            shutil.copy2(path, copy)
            os.utime(copy, (arrived.timestamp(), arrived.timestamp()))
            continue
        try:
            os.link(path, copy)
        except OSError:  # another file system
            shutil.copy2(path, copy)
    return left_out


def rebuild_pack(
    as_of: date, *, estate: Path, warehouse: Path, ledger_dir: Path, out_root: Path,
    known_then: bool = False,
) -> list[Path]:
    """Materialize everything as of `as_of` in a scratch warehouse and write its pack into
    out_root/<as_of>/ (as known then: out_root/<as_of>-as-known-then/); returns the pack's
    files. Raises PastDateError when it cannot."""
    import dagster as dg

    from pipelines import resources
    from pipelines.definitions import build_definitions
    from pipelines.ingest.azure import AzureResource
    from pipelines.partitions import every_day
    from pipelines.sources.bulletins.resource import bulletin_resources

    if not (estate / "registers").is_dir() and not (estate / "azure").is_dir():
        raise PastDateError(
            f"No estate at {estate} to rebuild {as_of} from: the observations and registers of "
            "that date are kept there (PATCHLEDGER_ESTATE / --estate)."
        )
    known_by = day_end(as_of) if known_then else None
    # Beside the estate, so that its files can be hard-linked rather than copied.
    parent = estate.resolve().parent
    with tempfile.TemporaryDirectory(prefix=".patchledger-as-of-",
                                     dir=parent if os.access(parent, os.W_OK) else None) as scratch:
        scratch_ledger = Path(scratch) / "ledger"
        _seed_ledger(as_of, warehouse, ledger_dir, scratch_ledger)
        scratch_estate = Path(scratch) / "estate"
        _copy_estate(estate, scratch_estate, _recorded_arrivals(warehouse), known_by)
        with _file_mode():
            live = resources.default_resources()["warehouse"]
            run_resources = {
                "warehouse": resources.WarehouseResource(
                    database=str(Path(scratch) / "warehouse.duckdb"), memory_limit=live.memory_limit,
                    threads=live.threads, lock_timeout_seconds=live.lock_timeout_seconds),
                "run_settings": resources.RunSettings(
                    estate_dir=str(scratch_estate), reports_dir=str(Path(scratch) / "reports"), source="files",
                    as_of=as_of.isoformat(), ledger_dir=str(scratch_ledger),
                    known_by=known_by.isoformat() if known_by else ""),
                "azure": AzureResource(),  # files mode: never opened
                # A rebuild re-derives notices that were already sent: it records them, never posts them.
                **bulletin_resources(deliver_notices=False),
            }
            job = build_definitions(run_resources).resolve_job_def("full_refresh")  # every partition
            result = job.execute_in_process(
                instance=dg.DagsterInstance.ephemeral(), raise_on_error=False, tags=every_day(),
                run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
            )
            if not result.success:
                failure = next((e for e in result.all_events if e.is_step_failure), None)
                error = failure.step_failure_data.error if failure else None
                while error is not None and error.cls_name.startswith("Dagster") and error.cause:
                    error = error.cause
                raise PastDateError(
                    f"Rebuilding the marts as of {as_of} failed"
                    + (f" in {failure.step_key}: {error.message.strip()}" if failure and error else "")
                )
            conn = resources.connect_warehouse(str(Path(scratch) / "warehouse.duckdb"), read_only=True)
            try:
                first = first_observation(conn)
            finally:
                conn.close()
            _refuse_before_data(as_of, first, f"the estate {estate}")
        # Only a complete pack reaches out_root, replacing an earlier one of the same date.
        pack = Path(out_root) / pack_folder(as_of, known_by)
        if pack.exists():
            shutil.rmtree(pack)
        pack.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(Path(scratch) / "reports" / pack.name), str(pack))
    return sorted(p for p in pack.rglob("*") if p.is_file())
