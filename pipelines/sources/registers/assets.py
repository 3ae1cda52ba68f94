"""The registers' assets: each register validated into raw.register_<name> and
staging.<name>; the append-only, hash-chained ledger of the authorization, test and exception
registers (pipelines/ledger/), its chain checks and the tampering check."""

import hashlib
from datetime import datetime
from pathlib import Path

import dagster as dg

from assets.common import (
    DUCKDB_POOL,
    OWNERS,
    STAGE2_BASELINES,
    STAGE5_AUTHORIZATION,
    STAGE6_MONITORING,
    key,
    warehouse_asset,
    warehouse_check,
)
from pipelines import unchanged
from pipelines.ingest.files import landed_at, sha256_file
from pipelines.ledger import (
    LEDGER_REGISTERS,
    append_ledger_file,
    append_register,
    ledger_file,
    rebuild_first_recorded,
    sync_ledger_files,
    verify_ledger,
)
from pipelines.ledger.registers import AppendResult
from pipelines.resources import RunSettings, WarehouseResource
from pipelines.tables import TableBuild, shares_steps
from pipelines.unchanged import fingerprint
from pipelines.warehouse import build_table, sql_literal, table_exists, table_metadata, transaction

from . import REGISTERS
from .reader import _VALIDATE, LoadResult, load_register


def register_asset(name: str, group_name: str) -> dg.AssetsDefinition:
    """An asset that validates `registers/<name>.csv` into raw.register_<name> and staging.<name>."""
    register = REGISTERS[name]

    def build(context: dg.AssetExecutionContext, conn, run_settings: RunSettings, run_config=None):
        path = Path(run_settings.estate_dir) / register.file
        raw = [f"raw.register_{name}"]
        with transaction(conn):
            # The same file under the same register definition was validated and received by an
            # earlier run: not read again, staging rebuilt from what was received (a missing file
            # is always reported).
            sha = sha256_file(path) if path.is_file() else None
            done = unchanged.prepare(conn, context, raw, [], sha, repr(register), _VALIDATE) if sha else None
            if done is not None and done.unchanged:
                result = LoadResult(register=name, source_file=register.file, found=True, source_sha256=sha,
                                    rows=build_table(conn, f"staging.{name}", f"register_{name}"))
            else:
                if done is None:
                    unchanged.forget(conn, raw)
                result = load_register(conn, run_settings.estate_dir, name, context.run.run_id)
            for warning in result.warnings:
                context.log.warning(warning)
            metadata = table_metadata(conn, f"staging.{name}")
        metadata["source_file"] = dg.MetadataValue.text(result.source_file)
        metadata["source_sha256"] = dg.MetadataValue.text(result.source_sha256 or "(missing)")
        if done is not None:
            metadata.update(done.metadata())
        return dg.MaterializeResult(asset_key=key(f"staging.{name}"), metadata=metadata)

    @warehouse_asset(
        name=name,
        key_prefix=["staging"],
        group_name=group_name,
        kinds={"duckdb", "csv"},
        description=f"The {register.file} register, validated and normalized (docs/estate.md).",
    )
    def _register(
        context: dg.AssetExecutionContext,
        warehouse: WarehouseResource,
        run_settings: RunSettings,
    ) -> dg.MaterializeResult:
        with warehouse.get_connection() as conn:
            return build(context, conn, run_settings)

    # The code location loads every register in one step (pipelines/tables.py, `grouped`).
    spec = next(iter(_register.specs))
    return shares_steps(_register, TableBuild(f"staging.{name}", spec, build, family="registers"))


patch_tests = register_asset("patch_tests", STAGE5_AUTHORIZATION)
authorization_events_register = register_asset("authorization_events", STAGE5_AUTHORIZATION)
exceptions = register_asset("exceptions", STAGE5_AUTHORIZATION)
support_incidents = register_asset("support_incidents", STAGE5_AUTHORIZATION)
rollbacks = register_asset("rollbacks", STAGE5_AUTHORIZATION)
# The remediation schedule (stage 6) is their reader.
maintenance_windows = register_asset("maintenance_windows", STAGE6_MONITORING)
blackout_dates = register_asset("blackout_dates", STAGE6_MONITORING)
# Stage 2 (baselines) reads these.
asset_categories = register_asset("asset_categories", STAGE2_BASELINES)
baselines = register_asset("baselines", STAGE2_BASELINES)


@dg.multi_asset(
    specs=[
        *(
            dg.AssetSpec(
                key(f"ledger.{name}"),
                deps=[key(f"staging.{name}")],
                group_name=STAGE5_AUTHORIZATION,
                kinds={"duckdb"},
                owners=OWNERS,
                description=f"Append-only, hash-chained copy of registers/{name}.csv "
                "(pipelines/ledger/).",
            )
            for name in LEDGER_REGISTERS
        ),
        dg.AssetSpec(
            key("ledger.tamper_findings"),
            deps=[key(f"staging.{name}") for name in LEDGER_REGISTERS],
            group_name=STAGE5_AUTHORIZATION,
            kinds={"duckdb"},
            owners=OWNERS,
            description="Rows of the ledgered registers found changed, removed, reordered or "
            "inserted between recorded rows after the ledger first saw them; append-only.",
        ),
    ],
    pool=DUCKDB_POOL,
)
def register_ledger(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, run_settings: RunSettings
):
    """Restore the ledger from its files where the warehouse lacks rows, append new register
    rows to their chains, record tampering with earlier rows, and rebuild the registers' staging
    tables from the first-recorded rows (what the controls are judged on)."""
    ledger_dir = Path(run_settings.ledger_path())
    known_by = run_settings.known_by_time()
    with warehouse.get_connection() as conn:
        unchanged = _ledger_state(conn, ledger_dir, known_by) == _recorded_state(conn)
        if unchanged:
            # The registers, the ledger, its files and the staging tables are as the last run left
            # them: syncing, appending and rebuilding would find nothing to do.
            context.log.info("Registers and ledger unchanged since the last run: nothing appended or rebuilt")
            restored = written = dict.fromkeys(LEDGER_REGISTERS, 0)
            results = [AppendResult(name, 0, 0, conn.execute(
                f"SELECT coalesce(max(seq), 0) FROM ledger.{name}").fetchall()[0][0]) for name in LEDGER_REGISTERS]
        else:
            with transaction(conn):
                restored = {name: sync_ledger_files(conn, name, ledger_dir, context.run.run_id)
                            for name in LEDGER_REGISTERS}
                results = [append_register(conn, name, context.run.run_id, _arrived(run_settings, name))
                           for name in LEDGER_REGISTERS]
                for name in LEDGER_REGISTERS:
                    rebuild_first_recorded(conn, name, known_by)
            # After the commit: the files never hold a row the warehouse rolled back.
            written = {name: append_ledger_file(conn, name, ledger_dir) for name in LEDGER_REGISTERS}
            # The state as this run leaves it, files included: the next run compares its own with it.
            _record_state(conn, _ledger_state(conn, ledger_dir, known_by))
        for result in results:
            if result.tamper_findings:
                context.log.warning(
                    f"registers/{result.register}.csv: {result.tamper_findings} row(s) changed, "
                    "removed or reordered since the ledger recorded them (ledger.tamper_findings)"
                )
        metadata = {
            r.register: table_metadata(conn, f"ledger.{r.register}", order_by="seq")
            for r in results
        }
        tamper_metadata = table_metadata(conn, "ledger.tamper_findings")
    for result in results:
        yield dg.MaterializeResult(
            asset_key=key(f"ledger.{result.register}"),
            metadata={
                **metadata[result.register],
                "appended": dg.MetadataValue.int(result.appended),
                "head_seq": dg.MetadataValue.int(result.head_seq),
                "restored_from_file": dg.MetadataValue.int(restored[result.register]),
                "ledger_file": dg.MetadataValue.path(str(ledger_file(ledger_dir, result.register))),
                "lines_written": dg.MetadataValue.int(written[result.register]),
                "unchanged": dg.MetadataValue.bool(unchanged),
            },
        )
    yield dg.MaterializeResult(asset_key=key("ledger.tamper_findings"), metadata=tamper_metadata)


# The fingerprint of the state the last run left (a table of its own: the ledger's rows and files
# name the runs that appended them, so it differs by construction between two histories).
LEDGER_STATE = "staging.ledger_state"
_LEDGER_STATE_COMMENT = (
    "Bookkeeping of register_ledger: the fingerprint of the registers, the ledger tables, the ledger "
    "files and the registers' staging tables as its last run left them; a run that finds the same skips."
)


def _ledger_state(conn, ledger_dir: Path, known_by: datetime | None) -> str:
    """A fingerprint of everything register_ledger reads and writes: the registers as received,
    the ledger tables, the ledger files, the registers' staging tables (which the register assets
    rewrite from the files), their SQL and the known-by time."""
    tables = [f"{schema}{name}" for name in LEDGER_REGISTERS
              for schema in ("raw.register_", "ledger.", "staging.")]
    files = [hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else "absent"
             for path in (ledger_file(ledger_dir, name) for name in LEDGER_REGISTERS)]
    return fingerprint(conn, [*tables, "ledger.tamper_findings", "ledger.chain_heads"],
                       [f"register_{name}" for name in LEDGER_REGISTERS], known_by, *files)


def _recorded_state(conn) -> str | None:
    if not table_exists(conn, LEDGER_STATE):
        return None
    found = conn.execute(f"SELECT fingerprint FROM {LEDGER_STATE}").fetchall()
    return found[0][0] if found else None


def _record_state(conn, state: str) -> None:
    with transaction(conn):
        conn.execute(f"CREATE OR REPLACE TABLE {LEDGER_STATE} AS SELECT ?::VARCHAR AS fingerprint", [state])
        conn.execute(f"COMMENT ON TABLE {LEDGER_STATE} IS {sql_literal(_LEDGER_STATE_COMMENT)}")


def _arrived(run_settings: RunSettings, name: str) -> datetime | None:
    """The register file's landing time: when the rows it adds to the ledger arrived."""
    path = Path(run_settings.estate_dir) / REGISTERS[name].file
    return landed_at(path) if path.exists() else None


def _first_items(lines: list[str]) -> dg.MetadataValue:
    """The first 20 lines as a Markdown list, for a check's metadata."""
    return dg.MetadataValue.md("\n".join(f"- {line}" for line in lines[:20]) or "_none_")


def _chain_check(name: str) -> dg.AssetChecksDefinition:
    @warehouse_check(
        asset=key(f"ledger.{name}"),
        name="chain_verifies",
        blocking=True,
        description="Every row's hash, chain link and recorded chain head recomputes; "
        "downstream assets do not run otherwise.",
    )
    def _check(warehouse: WarehouseResource) -> dg.AssetCheckResult:
        with warehouse.get_connection() as conn:
            problems = [p for p in verify_ledger(conn) if p.register == name]
        return dg.AssetCheckResult(
            passed=not problems,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={
                "problems": dg.MetadataValue.int(len(problems)),
                "first_problems": _first_items([str(p) for p in problems]),
            },
        )

    return _check


ledger_chain_checks = [_chain_check(name) for name in LEDGER_REGISTERS]


@warehouse_check(
    asset=key("ledger.tamper_findings"),
    name="no_register_tampering",
    description="No row of a ledgered register was changed, removed or reordered (WARN).",
)
def no_register_tampering(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    with warehouse.get_connection() as conn:
        rows = conn.execute(
            "SELECT register, row_id, kind FROM ledger.tamper_findings ORDER BY ALL"
        ).fetchall()
    return dg.AssetCheckResult(
        passed=not rows,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "findings": dg.MetadataValue.int(len(rows)),
            "first_findings": _first_items([f"{r}/{i}: {k}" for r, i, k in rows]),
        },
    )
