"""OSV raw assets: advisories for non-Microsoft software and their affected packages.

An advisory replaces its previous rows only when its `modified` is not older than the ingested
one; a malformed file fails the step and keeps the previous rows.
"""

from typing import Any

import dagster as dg
import duckdb

from assets.common import DUCKDB_POOL, key
from pipelines.resources import RunSettings, WarehouseResource
from pipelines.sources.bulletins import (
    PROVENANCE_COLUMNS,
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
from pipelines.sources.bulletins.resource import ChannelEndpoint
from pipelines.sources.osv import SCHEMAS, ParsedFile, osv_files
from pipelines.sources.osv.live import fetch_advisories
from pipelines.sources.osv.reader import parse_bytes, to_arrow
from pipelines.warehouse import read_sql, table_exists, table_metadata, transaction

OSV_TABLES = {"advisories": "raw.osv_advisories", "affected": "raw.osv_affected"}
_OSV_DESCRIPTIONS = {
    "advisories": "OSV advisories for non-Microsoft software as ingested from "
    "<estate>/bulletins/osv/: one row per advisory id (the newest `modified` read), with its "
    "dates (UTC), aliases, related and upstream ids, the CVEs it names, texts, the CVSS vector "
    "with its computed base score, the distribution's own rating, and the full record as JSON.",
    "affected": "OSV affected packages: one row per advisory, affected package, package name "
    "(the source package and, for Ubuntu, each binary package built from it) and range event "
    "pair (introduced -> fixed or last_affected); an affected package without a fix keeps one row "
    "with the version columns NULL.",
}


def ensure_osv_tables(conn: duckdb.DuckDBPyConnection) -> None:
    for name, table in OSV_TABLES.items():
        ensure_table(conn, table, SCHEMAS[name], _OSV_DESCRIPTIONS[name])


def _known_advisories(conn: duckdb.DuckDBPyConnection) -> dict:
    return known_revisions(conn, "raw.osv_advisories", "advisory_id", "modified_at")


@dg.multi_asset(
    specs=table_specs(
        {table: _OSV_DESCRIPTIONS[name] for name, table in OSV_TABLES.items()}, {"duckdb", "python"},
        # Live mode asks OSV about the packages seen on the estate's Linux machines.
        deps=("marts.vm_inventory", "staging.patch_observations"),
    ),
    pool=DUCKDB_POOL,
)
def osv_advisories(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, run_settings: RunSettings,
    osv_api: ChannelEndpoint,
):
    """OSV advisories (one per file, a JSON array or an ecosystem's all.zip, plain or gzip) from
    <estate>/bulletins/osv/ and its subfolders; in live mode those affecting the packages on the
    estate's Linux machines are fetched first from PATCHLEDGER_OSV_URL. An advisory replaces its previous rows only when its `modified` is not
    older than the ingested one; a malformed file fails the step and keeps the previous rows."""
    live = run_settings.source == "azure"
    if live:
        _fetch_live(context, warehouse, osv_api, run_settings)
    folder, files = channel_files(run_settings, "osv", osv_files)
    if not files:
        context.log.warning(f"No OSV advisories in {folder}: Linux packages get no CVEs from OSV.")
    with warehouse.get_connection() as conn, transaction(conn):
        ensure_osv_tables(conn)
        known = _known_advisories(conn)
        unread, skipped = unread_files(conn, "raw.osv_advisories", files, run_settings, context.run.run_id)
        chosen: dict[str, tuple[Any, tuple]] = {}
        older = 0
        for _, data, provenance in unread:
            parsed = parse_bytes(data, provenance["source_file"])
            affected_by_id: dict[str, list[dict[str, Any]]] = {}
            for row in parsed.affected:
                affected_by_id.setdefault(row["advisory_id"], []).append(row)
            for advisory in parsed.advisories:
                advisory_id = advisory["advisory_id"]
                item = (advisory, affected_by_id.get(advisory_id, []), provenance)
                older += not keep_newest(chosen, known, advisory_id, advisory["modified_at"], item)

        if chosen:
            items = [item for _, item in chosen.values()]
            advisories = [{**a, **p} for a, _, p in items]
            affected = [{**row, **p} for _, rows, p in items for row in rows]
            tables = to_arrow(ParsedFile(advisories, affected), PROVENANCE_COLUMNS)
            replace_rows(conn, {table: tables[name] for name, table in OSV_TABLES.items()}, "advisory_id",
                         sorted(chosen))
        log_ingest(
            conn, "osv", context.run.run_id, files_seen=len(files), files_skipped=skipped,
            documents_ingested=len(chosen), live_fetch=live,
        )
        context.log.info(
            f"OSV: {len(chosen)} advisories ingested, {older} older revisions ignored, "
            f"{skipped} unchanged files skipped."
        )
        metadata = {
            table: table_metadata(conn, table, order_by="advisory_id") for table in OSV_TABLES.values()
        }
    metadata["raw.osv_advisories"]["ingested_advisories"] = dg.MetadataValue.int(len(chosen))
    metadata["raw.osv_advisories"]["unchanged_files_skipped"] = dg.MetadataValue.int(skipped)
    for table, table_meta in metadata.items():
        yield dg.MaterializeResult(asset_key=key(table), metadata=table_meta)


def _fetch_live(context: dg.AssetExecutionContext, warehouse: WarehouseResource, osv_api: ChannelEndpoint,
                run_settings: RunSettings) -> None:
    """Fetch the OSV advisories of the packages on the estate's Linux machines, new or modified
    since the ingested copy, into the estate's osv folder."""
    with warehouse.get_connection() as conn:
        packages = (
            conn.execute(read_sql("bulletin_osv_queries")).fetchall()
            if table_exists(conn, "marts.vm_inventory") and table_exists(conn, "staging.patch_observations")
            else []
        )
        known = _known_advisories(conn)
    if not packages:
        context.log.warning("OSV: no Linux packages known in the estate yet; nothing asked.")
        return
    with osv_api.client() as client:
        counts = fetch_advisories(client, packages, known, channel_folder(run_settings, "osv"))
    context.log.info(f"OSV: {len(packages)} (ecosystem, package) pairs asked: {counts}")
