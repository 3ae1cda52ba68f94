"""Evidence packs for a past date: rebuilt as of that date, never relabelled.

The warehouse holds the marts of one evaluation date. A pack for another date D is rebuilt: a
scratch warehouse is materialized from the estate (every observation is kept there) and the
first-recorded ledger, with as_of = D, through the same Definitions as every other run, and the
pack is written from it. Every asset filters its inputs to what is dated by the end of D
(observations, register events, bulletins released, KEV additions), so nothing later leaks in.

The ledger is seeded from the live warehouse (its chain verified first) or, without one, from the
ledger files: controls are judged on the rows as first recorded, whatever the registers say now.
"""

from __future__ import annotations

import shutil
import tempfile
from datetime import date
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


def _seed_ledger(warehouse: Path, ledger_dir: Path, scratch_ledger: Path) -> None:
    """The first-recorded rows for the rebuild: the warehouse's ledger (verified), else the files."""
    if warehouse.exists():
        from pipelines.resources import connect_warehouse

        conn = connect_warehouse(str(warehouse), read_only=True)
        try:
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


def rebuild_pack(
    as_of: date, *, estate: Path, warehouse: Path, ledger_dir: Path, out_root: Path
) -> list[Path]:
    """Materialize everything as of `as_of` in a scratch warehouse and write its pack into
    out_root/<as_of>/; returns the pack's files. Raises PastDateError when it cannot."""
    import dagster as dg

    from pipelines import resources
    from pipelines.definitions import build_definitions
    from pipelines.lake import LAKE_ENV, lake_root
    from pipelines.partitions import every_day
    from pipelines.sources.bulletins.resource import bulletin_resources

    if lake_root():
        raise PastDateError(
            f"A past-date pack is rebuilt in a scratch warehouse, which lake mode ({LAKE_ENV}) "
            "would share with the live lake; run it without the lake against a copy of the estate."
        )
    if not (estate / "registers").is_dir() and not (estate / "azure").is_dir():
        raise PastDateError(
            f"No estate at {estate} to rebuild {as_of} from: the observations and registers of "
            "that date are kept there (PATCHLEDGER_ESTATE / --estate)."
        )
    with tempfile.TemporaryDirectory(prefix="patchledger-as-of-") as scratch:
        scratch_ledger = Path(scratch) / "ledger"
        _seed_ledger(warehouse, ledger_dir, scratch_ledger)
        live = resources.default_resources()["warehouse"]
        run_resources = {
            "warehouse": resources.WarehouseResource(
                database=str(Path(scratch) / "warehouse.duckdb"), memory_limit=live.memory_limit,
                threads=live.threads, lock_timeout_seconds=live.lock_timeout_seconds),
            "run_settings": resources.RunSettings(
                estate_dir=str(estate), reports_dir=str(out_root), source="files",
                as_of=as_of.isoformat(), ledger_dir=str(scratch_ledger)),
            **bulletin_resources(),
        }
        # A rebuild re-derives notices that were already sent: it records them, never posts them.
        run_resources["notification_webhook"] = run_resources["notification_webhook"].model_copy(
            update={"url": ""})
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
    pack = Path(out_root) / as_of.isoformat()
    return sorted(p for p in pack.rglob("*") if p.is_file())
