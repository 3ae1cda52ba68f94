"""MSRC raw assets: the CVRF month documents and the /updates index.

Each document replaces only its own rows (keyed by document id; an older revision never replaces
a newer one), so a month that MSRC serves empty or mis-titled fails the step without touching
what was ingested. In live mode (source=azure) the months changed since the last ingest are
fetched first (`live.py`, scope from the `msrc_api` resource).
"""

from datetime import UTC, datetime

import dagster as dg
import duckdb
import pyarrow as pa

from assets.common import DUCKDB_POOL, STAGE3_BULLETINS, key, warehouse_asset
from pipelines.resources import RunSettings, WarehouseResource
from pipelines.sources.bulletins import (
    PROVENANCE,
    channel_files,
    channel_folder,
    ensure_table,
    keep_newest,
    known_revisions,
    log_ingest,
    replace_rows,
    table_specs,
    unread_files,
)
from pipelines.sources.msrc import (
    INDEX_SCHEMA,
    SCHEMAS,
    MsrcDocumentError,
    document_files,
    index_file,
)
from pipelines.sources.msrc.index import index_rows, parse_index
from pipelines.sources.msrc.live import fetch_changed
from pipelines.sources.msrc.parser import parse_bytes, to_arrow
from pipelines.sources.msrc.resource import MsrcResource
from pipelines.warehouse import table_metadata, transaction

MSRC_TABLES = {
    "documents": "raw.msrc_documents",
    "products": "raw.msrc_products",
    "vulnerabilities": "raw.msrc_vulnerabilities",
    "fixes": "raw.msrc_fixes",
}
_MSRC_DESCRIPTIONS = {
    "documents": "MSRC CVRF month documents as ingested: one row per document id (the latest "
    "revision read), with its title, kind (security_update or mariner_release_notes), release "
    "dates (UTC), revision and the file it came from.",
    "products": "MSRC products per document: one row per distinct ProductID (a string; composite "
    "<package>-<platform> ids for Azure Linux / CBL-Mariner), with name, family and CPE.",
    "vulnerabilities": "MSRC vulnerabilities per document: one row per CVE with its title and "
    "parsed exploit status (publicly disclosed, exploited, exploitability assessments).",
    "fixes": "MSRC CVE x affected product x vendor-fix rows per document (data-sources.md 1.7): "
    "severity, impact and CVSS for the product, KB digits, supersedence list, restart, subtype, "
    "fixed build and URL. Affected products without a vendor fix keep one row with NULL fix.",
}
INDEX_TABLE = "raw.msrc_index"
_INDEX_DESCRIPTION = (
    "The MSRC /updates index last read: one row per document id with its title and release dates "
    "(UTC), fetched live (source=azure, saved as <estate>/bulletins/msrc/updates.json) or read from "
    "that file offline. Each new index replaces the previous one; no index leaves it as it was."
)
_INDEX_EXTRA = [*PROVENANCE, pa.field("fetched_at", pa.timestamp("us", tz="UTC"))]


def ensure_msrc_tables(conn: duckdb.DuckDBPyConnection) -> None:
    for name, table in MSRC_TABLES.items():
        ensure_table(conn, table, SCHEMAS[name], _MSRC_DESCRIPTIONS[name])


def ensure_index_table(conn: duckdb.DuckDBPyConnection) -> None:
    ensure_table(conn, INDEX_TABLE, INDEX_SCHEMA, _INDEX_DESCRIPTION, extra=_INDEX_EXTRA)


def _known_documents(conn: duckdb.DuckDBPyConnection) -> dict[str, datetime]:
    return known_revisions(conn, "raw.msrc_documents", "document_id", "current_release_at")


@dg.multi_asset(
    specs=table_specs({table: _MSRC_DESCRIPTIONS[name] for name, table in MSRC_TABLES.items()}, {"duckdb", "python"}),
    pool=DUCKDB_POOL,
)
def msrc_documents(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, run_settings: RunSettings,
    msrc_api: MsrcResource,
):
    """MSRC CVRF month documents (API JSON or CVRF XML, plain or gzip) from
    <estate>/bulletins/msrc/, fetched first from the MSRC API in live mode (source=azure)."""
    live = run_settings.source == "azure"
    folder = channel_folder(run_settings, "msrc")
    if live:
        with warehouse.get_connection() as conn:
            known = _known_documents(conn)
        with msrc_api.client() as client:
            fetched = fetch_changed(client, known, folder / "archive",
                                    since=msrc_api.since(datetime.now(UTC).date()),
                                    include_mariner=msrc_api.include_mariner())
        context.log.info(f"MSRC: fetched {len(fetched)} changed documents: {[d.document_id for d in fetched]}")
    folder, files = channel_files(run_settings, "msrc", document_files)
    if not files:
        context.log.warning(f"No MSRC documents in {folder}: the MSRC tables stay as they are.")

    with warehouse.get_connection() as conn, transaction(conn):
        ensure_msrc_tables(conn)
        known = _known_documents(conn)
        unread, skipped = unread_files(conn, "raw.msrc_documents", files, run_settings, context.run.run_id)
        chosen: dict[str, tuple[datetime, tuple]] = {}
        for _, data, provenance in unread:
            try:
                parsed = parse_bytes(data)
            except (ValueError, SyntaxError) as exc:
                raise MsrcDocumentError(f"{provenance['source_file']}: {exc}") from exc
            if not keep_newest(chosen, known, parsed.document_id, parsed.current_release_at, (parsed, provenance)):
                context.log.warning(
                    f"{provenance['source_file']}: {parsed.document_id} revision of "
                    f"{parsed.current_release_at} is older than the ingested {known[parsed.document_id]}; not ingested."
                )
        if chosen:
            docs = [item for _, item in chosen.values()]
            tables = to_arrow([d for d, _ in docs], [p for _, p in docs])
            replace_rows(conn, {table: tables[name] for name, table in MSRC_TABLES.items()}, "document_id",
                         list(chosen))
        log_ingest(
            conn, "msrc", context.run.run_id, files_seen=len(files), files_skipped=skipped,
            documents_ingested=len(chosen), live_fetch=live,
        )
        context.log.info(
            f"MSRC: {len(chosen)} documents ingested ({sorted(chosen)}), {skipped} unchanged files skipped."
        )
        metadata = {table: table_metadata(conn, table) for table in MSRC_TABLES.values()}
    # Reported after the commit: Dagster records a materialization only for committed rows.
    metadata["raw.msrc_documents"]["ingested_documents"] = dg.MetadataValue.json(sorted(chosen))
    metadata["raw.msrc_documents"]["unchanged_files_skipped"] = dg.MetadataValue.int(skipped)
    for table, table_meta in metadata.items():
        yield dg.MaterializeResult(asset_key=key(table), metadata=table_meta)


@warehouse_asset(
    key=key(INDEX_TABLE),
    group_name=STAGE3_BULLETINS,
    kinds={"duckdb", "python"},
    description=_INDEX_DESCRIPTION,
)
def msrc_index(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, run_settings: RunSettings,
    msrc_api: MsrcResource,
) -> dg.MaterializeResult:
    live = run_settings.source == "azure"
    folder = channel_folder(run_settings, "msrc")
    if live:
        with msrc_api.client() as client:
            body = client.index_bytes()
        parse_index(body)  # a broken answer fails here, before the saved copy is replaced
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "updates.json").write_bytes(body)
    path = index_file(folder) if folder.is_dir() else None
    with warehouse.get_connection() as conn, transaction(conn):
        ensure_index_table(conn)
        read = 0
        if path is None:
            context.log.info(f"No MSRC index ({folder}/updates.json): pending months are not computed.")
        else:
            unread, _ = unread_files(conn, INDEX_TABLE, [path], run_settings, context.run.run_id)
            for _, data, provenance in unread:
                try:
                    rows = index_rows(parse_index(data))
                except (ValueError, MsrcDocumentError) as exc:
                    raise MsrcDocumentError(
                        f"{provenance['source_file']}: not an MSRC /updates index ({exc})"
                    ) from exc
                extra = {**provenance, "fetched_at": datetime.now(UTC)}
                schema = INDEX_SCHEMA
                for field in _INDEX_EXTRA:
                    schema = schema.append(field)
                conn.register("_incoming", pa.Table.from_pylist([{**r, **extra} for r in rows], schema=schema))
                try:
                    conn.execute(f"DELETE FROM {INDEX_TABLE}")
                    conn.execute(f"INSERT INTO {INDEX_TABLE} BY NAME SELECT * FROM _incoming")
                finally:
                    conn.unregister("_incoming")
                read = 1
        log_ingest(
            conn, "msrc_index", context.run.run_id, files_seen=int(path is not None),
            files_skipped=int(path is not None) - read, documents_ingested=read, live_fetch=live,
        )
        metadata = table_metadata(conn, INDEX_TABLE, order_by="initial_release_at DESC")
    return dg.MaterializeResult(metadata=metadata)
