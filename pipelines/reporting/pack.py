"""The evidence pack for one as-of date: the report (HTML and PDF, with charts), the interactive
dashboard, the populations (CSV and workbook) and a manifest of SHA-256 hashes.

Everything is read from the warehouse; nothing depends on the wall clock, so the same warehouse
and as-of date give byte-identical files.
"""

from __future__ import annotations

import json
import multiprocessing
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path

import duckdb

import pipelines
from pipelines.ingest.files import sha256_file
from pipelines.reporting import charts, dashboard, document, queries, workbook
from pipelines.warehouse import table_exists


def ledger_heads(conn: duckdb.DuckDBPyConnection) -> dict[str, dict]:
    if not table_exists(conn, "ledger.chain_heads"):
        return {}
    return {
        register: {"seq": seq, "chain_sha256": chain}
        for register, seq, chain in conn.execute(
            "SELECT register, max(head_seq), arg_max(head_chain_sha256, head_seq) "
            "FROM ledger.chain_heads GROUP BY register ORDER BY register"
        ).fetchall()
    }


def start_forked(target: Callable, *args) -> multiprocessing.Process | None:
    """`target(*args)` in a forked process (it inherits the arguments: nothing is copied
    through a pipe); None where processes are not forked (finish_forked then runs it)."""
    if "fork" not in multiprocessing.get_all_start_methods():
        return None
    child = multiprocessing.get_context("fork").Process(target=target, args=args, daemon=True)
    child.start()
    return child


def finish_forked(child: multiprocessing.Process | None, target: Callable, *args) -> None:
    """Wait for the forked process; if it failed (or there was none), run `target(*args)` here,
    which raises the failure itself."""
    if child is not None:
        child.join()
        if child.exitcode == 0:
            return
    target(*args)


def stop_forked(child: multiprocessing.Process | None, partial: Path) -> None:
    """After a failure: no half-written file of a forked process in the pack."""
    if child is not None:
        child.terminate()
        child.join()
    partial.unlink(missing_ok=True)


def write_reports(
    conn_or_path: duckdb.DuckDBPyConnection | str, out_root: Path, as_of: date | None,
    known_by: datetime | None = None,
) -> list[Path]:
    """Write the evidence pack for `as_of` into out_root/<as_of>/ and return its files.

    `known_by` marks a pack as known then (built from only what had arrived before it): its
    folder is <as_of>-as-known-then and its manifest says so."""
    if isinstance(conn_or_path, str):
        from pipelines.resources import connect_warehouse

        conn = connect_warehouse(conn_or_path, read_only=True)
        try:
            return write_reports(conn, out_root, as_of, known_by)
        finally:
            conn.close()
    conn = conn_or_path
    from pipelines.pastdate import PastDateError, marts_as_of, pack_folder

    built_for = marts_as_of(conn)
    if as_of is not None and built_for is not None and as_of != built_for:
        # Never relabel: the marts hold the figures of built_for, not of as_of.
        raise PastDateError(
            f"The warehouse's marts are as of {built_for}, not {as_of}: a pack for {as_of} must be "
            f"rebuilt as of that date (`patchledger report --as-of {as_of}` does it)."
        )
    as_of = queries.report_as_of(conn, as_of)
    out_dir = Path(out_root) / pack_folder(as_of, known_by)
    (out_dir / "populations").mkdir(parents=True, exist_ok=True)
    populations = {name: queries.population(conn, name, as_of)
                   for name, (table, _) in queries.POPULATIONS.items() if table_exists(conn, table)}
    book = out_dir / "populations.xlsx"
    # The workbook, the slowest population file, is written on the other core while this
    # process reads the report's figures, draws the charts and writes the CSVs.
    pending = start_forked(workbook.write_workbook, book, populations, as_of)
    try:
        data = queries.report_data(conn, as_of)
        data["known_by"] = known_by.isoformat() if known_by else None
        rendered = charts.render_charts(queries.chart_data(conn, as_of, data))
        written: list[Path] = []
        for name, (columns, rows) in populations.items():
            path = out_dir / "populations" / f"{name}.csv"
            workbook.write_csv(path, rows, columns)
            written.append(path)
    except BaseException:
        stop_forked(pending, book)
        raise
    finish_forked(pending, workbook.write_workbook, book, populations, as_of)
    written.append(book)
    # The report prints the hashes of the population files, so they are written first.
    digests = {p: sha256_file(p) for p in written}
    data["data_files"] = [
        {"name": str(p.relative_to(out_dir)), "sha256": digests[p], "rows": len(populations.get(p.stem, ((), ()))[1])}
        for p in written
    ]
    html = document.render_html(data, rendered)
    html_path = out_dir / "compliance-report.html"
    html_path.write_text(html, encoding="utf-8")
    pdf_path = out_dir / "compliance-report.pdf"
    # The PDF, the pack's slowest file, is laid out on the other core while this process writes
    # the dashboard (the report does not print the dashboard's hash).
    printing = start_forked(document.write_pdf, html, pdf_path)
    try:
        board_path = out_dir / "dashboard.html"
        board_path.write_text(dashboard.render(conn, data, rendered), encoding="utf-8")
    except BaseException:
        stop_forked(printing, pdf_path)
        raise
    finish_forked(printing, document.write_pdf, html, pdf_path)
    written += [html_path, pdf_path, board_path]
    digests.update({p: sha256_file(p) for p in (html_path, pdf_path, board_path)})
    manifest_path = out_dir / "manifest.json"
    manifest = {
        "report_id": f"PL-{as_of.isoformat()}",
        "as_of": as_of.isoformat(),
        # As known then: what had arrived before this instant; else as corrected since.
        "basis": "as_known_then" if known_by else "as_corrected_since",
        **({"known_by": known_by.isoformat()} if known_by else {}),
        "code_version": pipelines.__version__,
        "policy_version": (data.get("criteria") or [{}])[0].get("policy_version"),
        "files": {str(p.relative_to(out_dir)): digests[p] for p in sorted(written)},
        "population_rows": {name: len(rows) for name, (_, rows) in populations.items()},
        "table_rows": {t["name"]: t["rows"] for t in data["tables"]},
        # The ledger's chain heads, anchored outside the warehouse: rewriting every hash in the
        # warehouse cannot hide a change made before this report was written.
        "ledger_heads": ledger_heads(conn),
    }
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return [*written, manifest_path]


