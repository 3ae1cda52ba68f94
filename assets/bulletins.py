"""Stage 3: vendor bulletins (MSRC CVRF, CISA KEV, FIRST EPSS, OSV, CISA Vulnrichment), the
patch catalog, the channels' freshness and the notices of new patches that apply to the estate.
In live mode (source=azure) each channel first downloads what is new into its estate folder
(pipelines/connectors/<channel>.py), then reads the folder exactly as offline.

Raw tables accumulate: each MSRC document replaces only its own rows (keyed by document id), each
OSV advisory likewise (keyed by advisory id, the newest `modified` wins), each KEV catalog and
EPSS day is a dated snapshot, so the marts can be computed "as of" a date and a month that MSRC
serves empty or mis-titled fails the step without touching what was ingested.
Files whose sha256 is already ingested are not parsed again. Every successful ingest appends a
row to raw.bulletin_ingest_log (channel, run, time, files and documents read), the source of
marts.bulletin_channels' "last successful ingest".
"""


import hashlib
import json
import os
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dagster as dg
import duckdb
import httpx
import pyarrow as pa

from assets.common import (
    DUCKDB_POOL,
    EVALUATION_DATE_SOURCE,
    OWNERS,
    STAGE3_BULLETINS,
    key,
    warehouse_asset,
    warehouse_check,
)
from pipelines.connectors import epss, kev, msrc, osv, vulnrichment
from pipelines.ledger import GENESIS, chain_hash, comment_ledger
from pipelines.resources import RunSettings, WarehouseResource
from pipelines.warehouse import (
    build_table,
    comment_table,
    read_sql,
    resolve_as_of,
    row_count,
    sql_literal,
    table_exists,
    table_metadata,
    transaction,
)

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
_PROVENANCE = [
    pa.field("source_file", pa.string()),
    pa.field("source_sha256", pa.string()),
    pa.field("ingest_run", pa.string()),
]

KEV_DDL = """
CREATE TABLE IF NOT EXISTS raw.kev_vulnerabilities (
    catalog_version VARCHAR, date_released TIMESTAMPTZ, catalog_count BIGINT, cve VARCHAR,
    vendor_project VARCHAR, product VARCHAR, vulnerability_name VARCHAR, date_added DATE,
    short_description VARCHAR, required_action VARCHAR, due_date DATE,
    known_ransomware_campaign_use VARCHAR, notes VARCHAR, cwes VARCHAR[],
    source_file VARCHAR, source_sha256 VARCHAR, ingest_run VARCHAR
)
"""
EPSS_DDL = """
CREATE TABLE IF NOT EXISTS raw.epss_scores (
    cve VARCHAR, epss DOUBLE, percentile DOUBLE, model_version VARCHAR, score_date DATE,
    source_file VARCHAR, source_sha256 VARCHAR, ingest_run VARCHAR
)
"""


INGEST_LOG_DDL = """
CREATE TABLE IF NOT EXISTS raw.bulletin_ingest_log (
    channel VARCHAR NOT NULL, ingest_run VARCHAR NOT NULL, ingested_at TIMESTAMPTZ NOT NULL,
    live_fetch BOOLEAN NOT NULL, files_seen INTEGER NOT NULL, files_skipped INTEGER NOT NULL,
    documents_ingested INTEGER NOT NULL
)
"""
_INGEST_LOG_COMMENT = (
    "One row per successful bulletin ingest (append-only): channel (msrc, msrc_index, kev, epss, "
    "osv, vulnrichment), Dagster run, end time (UTC), whether it fetched live, files seen, files skipped as "
    "already ingested (same sha256), and documents (months, snapshots, score days, advisories) "
    "ingested as new or changed."
)


def _log_ingest(
    conn: duckdb.DuckDBPyConnection,
    channel: str,
    run_id: str,
    *,
    files_seen: int,
    files_skipped: int,
    documents_ingested: int,
    live_fetch: bool = False,
) -> None:
    """Record a successful ingest, inside the ingest's own transaction (gone if it rolls back)."""
    conn.execute(INGEST_LOG_DDL)
    literal = sql_literal(_INGEST_LOG_COMMENT)
    conn.execute(f"COMMENT ON TABLE raw.bulletin_ingest_log IS {literal}")
    conn.execute(
        "INSERT INTO raw.bulletin_ingest_log VALUES (?, ?, ?, ?, ?, ?, ?)",
        [channel, run_id, datetime.now(UTC), live_fetch, files_seen, files_skipped, documents_ingested],
    )


def _bulletins_dir(run_settings: RunSettings, source: str) -> Path:
    return Path(run_settings.estate_dir) / "bulletins" / source


def _relative(path: Path, run_settings: RunSettings) -> str:
    """The estate-relative name of a file: no machine paths in the warehouse."""
    try:
        return path.resolve().relative_to(Path(run_settings.estate_dir).resolve()).as_posix()
    except ValueError:
        return path.name


def _ensure_msrc_tables(conn: duckdb.DuckDBPyConnection) -> None:
    for name, table in MSRC_TABLES.items():
        schema = msrc.SCHEMAS[name]
        for extra in _PROVENANCE:
            schema = schema.append(extra)
        conn.register("_empty", pa.Table.from_pylist([], schema=schema))
        try:
            conn.execute(f"CREATE TABLE IF NOT EXISTS {table} AS SELECT * FROM _empty")
        finally:
            conn.unregister("_empty")
        literal = sql_literal(_MSRC_DESCRIPTIONS[name])
        conn.execute(f"COMMENT ON TABLE {table} IS {literal}")


def make_msrc_client() -> msrc.MsrcClient:
    """The live MSRC client (tests replace this function to serve recorded answers)."""
    return msrc.client_from_env()


def _known_documents(warehouse: WarehouseResource) -> dict[str, datetime]:
    with warehouse.get_connection() as conn:
        if not table_exists(conn, "raw.msrc_documents"):
            return {}
        rows = conn.execute(
            "SELECT document_id, current_release_at FROM raw.msrc_documents"
        ).fetchall()
    return {document_id: current for document_id, current in rows}


def _fetch_live(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, folder: Path
) -> None:
    """Fetch the MSRC months changed since the last ingest into the estate's msrc folder.

    Scope: months first released in the last PATCHLEDGER_MSRC_MONTHS (default 24) months, plus
    the Mariner pseudo-months when PATCHLEDGER_MSRC_MARINER=1.
    """
    months = int(os.environ.get("PATCHLEDGER_MSRC_MONTHS", "24"))
    since = datetime.now(UTC).date() - timedelta(days=31 * months)
    mariner = os.environ.get("PATCHLEDGER_MSRC_MARINER", "0") == "1"
    with make_msrc_client() as client:
        fetched = msrc.fetch_changed(
            client,
            _known_documents(warehouse),
            folder / "archive",
            since=since,
            include_mariner=mariner,
        )
    context.log.info(f"MSRC: fetched {len(fetched)} changed documents: {[d.document_id for d in fetched]}")


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            key(table),
            description=_MSRC_DESCRIPTIONS[name],
            group_name=STAGE3_BULLETINS,
            kinds={"duckdb", "python"},
            owners=OWNERS,
        )
        for name, table in MSRC_TABLES.items()
    ],
    pool=DUCKDB_POOL,
)
def msrc_documents(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, run_settings: RunSettings
):
    """MSRC CVRF month documents (API JSON or CVRF XML, plain or gzip) from
    <estate>/bulletins/msrc/, fetched first from the MSRC API in live mode (source=azure)."""
    folder = _bulletins_dir(run_settings, "msrc")
    if run_settings.source == "azure":
        _fetch_live(context, warehouse, folder)
    files = msrc.document_files(folder) if folder.is_dir() else []
    if not files:
        context.log.warning(f"No MSRC documents in {folder}: the MSRC tables stay as they are.")

    with warehouse.get_connection() as conn, transaction(conn):
        _ensure_msrc_tables(conn)
        ingested = {
            (f, s)
            for f, s in conn.execute(
                "SELECT source_file, source_sha256 FROM raw.msrc_documents"
            ).fetchall()
        }
        known = dict(
            conn.execute("SELECT document_id, current_release_at FROM raw.msrc_documents").fetchall()
        )
        chosen: dict[str, tuple[msrc.ParsedDocument, dict]] = {}
        skipped = 0
        for path in files:
            data = path.read_bytes()
            provenance = {
                "source_file": _relative(path, run_settings),
                "source_sha256": msrc.sha256_bytes(data),
                "ingest_run": context.run.run_id,
            }
            if (provenance["source_file"], provenance["source_sha256"]) in ingested:
                skipped += 1
                continue
            try:
                parsed = msrc.parse_bytes(data)
            except (ValueError, SyntaxError) as exc:
                raise msrc.MsrcDocumentError(f"{provenance['source_file']}: {exc}") from exc
            seen = known.get(parsed.document_id)
            if seen is not None and parsed.current_release_at < seen:
                context.log.warning(
                    f"{provenance['source_file']}: {parsed.document_id} revision of "
                    f"{parsed.current_release_at} is older than the ingested {seen}; not ingested."
                )
                continue
            previous = chosen.get(parsed.document_id)
            if previous is None or parsed.current_release_at >= previous[0].current_release_at:
                chosen[parsed.document_id] = (parsed, provenance)

        if chosen:
            docs = list(chosen.values())
            tables = msrc.to_arrow([d for d, _ in docs], [p for _, p in docs])
            conn.register("_ids", pa.table({"document_id": list(chosen)}))
            try:
                for name, table in MSRC_TABLES.items():
                    conn.execute(
                        f"DELETE FROM {table} WHERE document_id IN (SELECT document_id FROM _ids)"
                    )
                    conn.register("_incoming", tables[name])
                    conn.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _incoming")
                    conn.unregister("_incoming")
            finally:
                conn.unregister("_ids")
        _log_ingest(
            conn, "msrc", context.run.run_id, files_seen=len(files), files_skipped=skipped,
            documents_ingested=len(chosen), live_fetch=run_settings.source == "azure",
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
    key=key("raw.kev_vulnerabilities"),
    group_name=STAGE3_BULLETINS,
    kinds={"duckdb", "python"},
)
def kev_vulnerabilities(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, run_settings: RunSettings
) -> dg.MaterializeResult:
    """CISA Known Exploited Vulnerabilities, every catalog snapshot read from
    <estate>/bulletins/kev/ (JSON feed or CSV; fetched first from PATCHLEDGER_KEV_URL in live
    mode): one row per snapshot and CVE, text trimmed, cwes as a list, snapshot dated by
    catalogVersion / dateReleased."""
    folder = _bulletins_dir(run_settings, "kev")
    live = run_settings.source == "azure"
    if live:
        with kev.client_from_env() as client:
            fetched = kev.fetch_catalog(client, folder)
        context.log.info(f"KEV: {'fetched ' + fetched.name if fetched else 'feed not modified'}")
    files = kev.kev_files(folder) if folder.is_dir() else []
    if not files:
        context.log.warning(f"No KEV catalog in {folder}: KEV flags will be false.")
    with warehouse.get_connection() as conn, transaction(conn):
        conn.execute(KEV_DDL)
        _ingest_snapshots(context, conn, run_settings, "kev", "raw.kev_vulnerabilities",
                          "catalog_version", files, kev.read_kev, live_fetch=live)
        return dg.MaterializeResult(metadata=table_metadata(conn, "raw.kev_vulnerabilities"))


def _ingest_snapshots(context, conn, run_settings, channel, table, snapshot_column, files, read,
                      live_fetch=False):
    """Load dated snapshot files (KEV catalogs, EPSS days) into `table`: a file already held
    (same name and sha256) is skipped; a snapshot read again replaces itself."""
    skipped = 0
    for path in files:
        source_file = _relative(path, run_settings)
        sha = msrc.sha256_bytes(path.read_bytes())
        if conn.execute(
            f"SELECT count(*) FROM {table} WHERE source_file = ? AND source_sha256 = ?",
            [source_file, sha],
        ).fetchall()[0][0]:
            skipped += 1
            continue
        snapshot = read(conn, path)
        conn.register("_snapshot", snapshot)
        try:
            conn.execute(
                f"DELETE FROM {table} WHERE {snapshot_column} IN "
                f"(SELECT DISTINCT {snapshot_column} FROM _snapshot)"
            )
            conn.execute(
                f"INSERT INTO {table} BY NAME "
                "SELECT *, ? AS source_file, ? AS source_sha256, ? AS ingest_run FROM _snapshot",
                [source_file, sha, context.run.run_id],
            )
        finally:
            conn.unregister("_snapshot")
        context.log.info(f"{channel}: {snapshot.num_rows} rows from {source_file}")
    _log_ingest(conn, channel, context.run.run_id, files_seen=len(files), files_skipped=skipped,
                documents_ingested=len(files) - skipped, live_fetch=live_fetch)


@warehouse_asset(
    key=key("raw.epss_scores"),
    group_name=STAGE3_BULLETINS,
    kinds={"duckdb", "sql"},
)
def epss_scores(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, run_settings: RunSettings
) -> dg.MaterializeResult:
    """FIRST EPSS daily scores from <estate>/bulletins/epss/epss_scores-YYYY-MM-DD.csv.gz (the
    newest day fetched first from PATCHLEDGER_EPSS_URL in live mode): one row per score date and
    CVE, with the model version from the file's comment line."""
    folder = _bulletins_dir(run_settings, "epss")
    live = run_settings.source == "azure"
    if live:
        with epss.client_from_env() as client:
            fetched = epss.fetch_daily(client, folder, datetime.now(UTC).date())
        context.log.info(f"EPSS: {'fetched ' + fetched.name if fetched else 'no newer daily file'}")
    files = epss.epss_files(folder) if folder.is_dir() else []
    if not files:
        context.log.warning(f"No EPSS files in {folder}: EPSS scores will be NULL.")
    with warehouse.get_connection() as conn, transaction(conn):
        conn.execute(EPSS_DDL)
        _ingest_snapshots(context, conn, run_settings, "epss", "raw.epss_scores", "score_date",
                          files, epss.read_epss, live_fetch=live)
        return dg.MaterializeResult(
            metadata=table_metadata(conn, "raw.epss_scores", order_by="score_date DESC, cve")
        )


def _sql_asset(
    table: str,
    sql_name: str,
    deps: list[str],
    description: str,
    uses_as_of: bool = False,
    ensure_inputs=None,
) -> dg.AssetsDefinition:
    @warehouse_asset(
        key=key(table),
        group_name=STAGE3_BULLETINS,
        kinds={"duckdb", "sql"},
        deps=[key(d) for d in deps] + ([EVALUATION_DATE_SOURCE] if uses_as_of else []),
        description=description,
    )
    def _build(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, run_settings: RunSettings
    ) -> dg.MaterializeResult:
        with warehouse.get_connection() as conn, transaction(conn):
            if ensure_inputs is not None:  # an input channel never ingested is an empty table
                ensure_inputs(conn)
            params: dict[str, date] = {}
            if uses_as_of:
                params["as_of"] = resolve_as_of(conn, run_settings.as_of_date())
            build_table(conn, table, sql_name, params=params)
            metadata = table_metadata(conn, table)
        if uses_as_of:
            metadata["as_of"] = dg.MetadataValue.text(params["as_of"].isoformat())
        return dg.MaterializeResult(metadata=metadata)

    return _build


msrc_fixes = _sql_asset(
    "staging.msrc_fixes",
    "bulletin_msrc_fixes",
    list(MSRC_TABLES.values()),
    "MSRC fixes normalized and joined (document, product, CVE exploit status), with patch_key "
    "and a comparable fixed build: the input of every patch mart.",
)
patch_supersedence = _sql_asset(
    "marts.patch_supersedence",
    "patch_supersedence",
    ["staging.msrc_fixes"],
    "Direct supersedence edges: the later patch kb replaces superseded_kb.",
)
patch_supersedence_closure = _sql_asset(
    "marts.patch_supersedence_closure",
    "patch_supersedence_closure",
    ["marts.patch_supersedence"],
    "Transitive supersedence (recursive, cycle-safe) with the shortest chain depth.",
)
patch_fix_lineage = _sql_asset(
    "marts.patch_fix_lineage",
    "patch_fix_lineage",
    ["marts.patch_supersedence", "staging.msrc_fixes"],
    "Fix lineage per KB: the root KB shared by a patch and everything linked to it by supersedence.",
)
patch_fixed_builds = _sql_asset(
    "marts.patch_fixed_builds",
    "patch_fixed_builds",
    ["staging.msrc_fixes"],
    "The fixed-build rule per patch and product: installed OS build >= fixed build means fixed.",
)
patch_cves = _sql_asset(
    "marts.patch_cves",
    "patch_cves",
    ["staging.msrc_fixes", "staging.osv_fixes", "raw.kev_vulnerabilities", "raw.epss_scores",
     "raw.vulnrichment_ssvc"],
    "Patch x CVE x product (MSRC and OSV) with severity and CVSS, exploit status, KEV, EPSS and "
    "CISA Vulnrichment SSVC decision points as of the evaluation date.",
    uses_as_of=True,
    ensure_inputs=lambda conn: _ensure_vulnrichment_table(conn),
)
patch_bod2604 = _sql_asset(
    "marts.patch_bod2604",
    "patch_bod2604",
    ["marts.patch_cves", "staging.sla_policy"],
    "CISA BOD 26-04 tier per patch and machine exposure: each CVE decided on KEV, exposure and "
    "Vulnrichment's Automatable and Technical Impact (policy defaults where a CVE has none).",
)
patch_catalog = _sql_asset(
    "marts.patch_catalog",
    "patch_catalog",
    [
        "staging.msrc_fixes",
        "staging.osv_fixes",
        "marts.patch_cves",
        "marts.patch_supersedence",
        "marts.patch_fix_lineage",
    ],
    "The patch catalog: one row per patch with severity, CVSS, exploit/KEV status, products, "
    "fixed builds, supersedence and fix lineage.",
    uses_as_of=True,
)


@warehouse_check(asset=key("marts.patch_catalog"), blocking=True)
def patch_catalog_key_unique(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    """Every catalog row has a patch_key and no patch_key appears twice."""
    with warehouse.get_connection() as conn:
        nulls, duplicates = conn.execute(
            "SELECT count(*) FILTER (WHERE patch_key IS NULL), count(patch_key) - count(DISTINCT patch_key) "
            "FROM marts.patch_catalog"
        ).fetchall()[0]
    return dg.AssetCheckResult(
        passed=nulls == 0 and duplicates == 0,
        metadata={"null_patch_keys": nulls, "duplicate_patch_keys": duplicates},
    )


@warehouse_check(asset=key("raw.kev_vulnerabilities"))
def kev_catalog_not_empty(
    warehouse: WarehouseResource, run_settings: RunSettings
) -> dg.AssetCheckResult:
    """When a KEV file is in the estate, the KEV table holds entries."""
    folder = _bulletins_dir(run_settings, "kev")
    files = kev.kev_files(folder) if folder.is_dir() else []
    with warehouse.get_connection() as conn:
        rows = row_count(conn, "raw.kev_vulnerabilities")
    return dg.AssetCheckResult(
        passed=not files or rows > 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"kev_files": len(files), "rows": rows},
    )


@warehouse_check(asset=key("marts.patch_supersedence_closure"))
def supersedence_cycles(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    """MSRC supersedence has no cycles (a cycle is data noise: reported, never looped on)."""
    with warehouse.get_connection() as conn:
        members = [
            r[0]
            for r in conn.execute(
                "SELECT DISTINCT kb FROM marts.patch_supersedence_closure WHERE in_cycle ORDER BY kb"
            ).fetchall()
        ]
    return dg.AssetCheckResult(
        passed=not members,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"kbs_in_cycles": dg.MetadataValue.json(members[:200]), "count": len(members)},
    )


# ---- OSV advisories (non-Microsoft software) ----

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


def _ensure_osv_tables(conn: duckdb.DuckDBPyConnection) -> None:
    for name, table in OSV_TABLES.items():
        schema = osv.SCHEMAS[name]
        for extra in _PROVENANCE:
            schema = schema.append(extra)
        conn.register("_empty", pa.Table.from_pylist([], schema=schema))
        try:
            conn.execute(f"CREATE TABLE IF NOT EXISTS {table} AS SELECT * FROM _empty")
        finally:
            conn.unregister("_empty")
        literal = sql_literal(_OSV_DESCRIPTIONS[name])
        conn.execute(f"COMMENT ON TABLE {table} IS {literal}")


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            key(table),
            description=_OSV_DESCRIPTIONS[name],
            group_name=STAGE3_BULLETINS,
            kinds={"duckdb", "python"},
            owners=OWNERS,
            # Live mode asks OSV about the packages seen on the estate's Linux machines.
            deps=[key("marts.vm_inventory"), key("staging.patch_observations")],
        )
        for name, table in OSV_TABLES.items()
    ],
    pool=DUCKDB_POOL,
)
def osv_advisories(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, run_settings: RunSettings
):
    """OSV advisories (one per file, a JSON array or an ecosystem's all.zip, plain or gzip) from
    <estate>/bulletins/osv/ and its subfolders; in live mode those affecting the packages on the
    estate's Linux machines are fetched first from PATCHLEDGER_OSV_URL. An advisory replaces its previous rows only when its `modified` is not
    older than the ingested one; a malformed file fails the step and keeps the previous rows."""
    folder = _bulletins_dir(run_settings, "osv")
    live = run_settings.source == "azure"
    if live:
        _fetch_osv_live(context, warehouse, folder)
    files = osv.osv_files(folder) if folder.is_dir() else []
    if not files:
        context.log.warning(f"No OSV advisories in {folder}: Linux packages get no CVEs from OSV.")
    with warehouse.get_connection() as conn, transaction(conn):
        _ensure_osv_tables(conn)
        ingested = {
            (f, s)
            for f, s in conn.execute(
                "SELECT DISTINCT source_file, source_sha256 FROM raw.osv_advisories"
            ).fetchall()
        }
        known = dict(
            conn.execute("SELECT advisory_id, modified_at FROM raw.osv_advisories").fetchall()
        )
        chosen: dict[str, tuple[dict[str, Any], list[dict[str, Any]], dict[str, str]]] = {}
        skipped = older = 0
        for path in files:
            data = path.read_bytes()
            provenance = {
                "source_file": _relative(path, run_settings),
                "source_sha256": msrc.sha256_bytes(data),
                "ingest_run": context.run.run_id,
            }
            if (provenance["source_file"], provenance["source_sha256"]) in ingested:
                skipped += 1
                continue
            parsed = osv.parse_bytes(data, provenance["source_file"])
            affected_by_id: dict[str, list[dict[str, Any]]] = {}
            for row in parsed.affected:
                affected_by_id.setdefault(row["advisory_id"], []).append(row)
            for advisory in parsed.advisories:
                advisory_id = advisory["advisory_id"]
                seen = known.get(advisory_id)
                if seen is not None and advisory["modified_at"] < seen:
                    older += 1
                    continue
                previous = chosen.get(advisory_id)
                if previous is None or advisory["modified_at"] >= previous[0]["modified_at"]:
                    chosen[advisory_id] = (advisory, affected_by_id.get(advisory_id, []), provenance)

        if chosen:
            advisories = [{**a, **p} for a, _, p in chosen.values()]
            affected = [{**row, **p} for _, rows, p in chosen.values() for row in rows]
            tables = osv.to_arrow(osv.ParsedFile(advisories, affected), [f.name for f in _PROVENANCE])
            conn.register("_ids", pa.table({"advisory_id": sorted(chosen)}))
            try:
                for name, table in OSV_TABLES.items():
                    conn.execute(
                        f"DELETE FROM {table} WHERE advisory_id IN (SELECT advisory_id FROM _ids)"
                    )
                    conn.register("_incoming", tables[name])
                    conn.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _incoming")
                    conn.unregister("_incoming")
            finally:
                conn.unregister("_ids")
        _log_ingest(
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


def _fetch_osv_live(context: dg.AssetExecutionContext, warehouse: WarehouseResource, folder: Path) -> None:
    """Fetch the OSV advisories of the packages on the estate's Linux machines, new or modified
    since the ingested copy, into the estate's osv folder."""
    with warehouse.get_connection() as conn:
        packages = (
            conn.execute(read_sql("bulletin_osv_queries")).fetchall()
            if table_exists(conn, "marts.vm_inventory") and table_exists(conn, "staging.patch_observations")
            else []
        )
        known = (
            dict(conn.execute("SELECT advisory_id, modified_at FROM raw.osv_advisories").fetchall())
            if table_exists(conn, "raw.osv_advisories")
            else {}
        )
    if not packages:
        context.log.warning("OSV: no Linux packages known in the estate yet; nothing asked.")
        return
    with osv.client_from_env() as client:
        counts = osv.fetch_advisories(client, packages, known, folder)
    context.log.info(f"OSV: {len(packages)} (ecosystem, package) pairs asked: {counts}")


osv_fixes = _sql_asset(
    "staging.osv_fixes",
    "bulletin_osv_fixes",
    list(OSV_TABLES.values()),
    "OSV advisory fixes normalized: advisory x CVE x ecosystem x package x fixed version, with "
    "the <package>_<version> patch key and an MSRC-scale severity.",
)


# ---- CISA Vulnrichment (SSVC decision points per CVE) ----

VULNRICHMENT_TABLE = "raw.vulnrichment_ssvc"
_VULNRICHMENT_DESCRIPTION = (
    "CISA Vulnrichment SSVC decision points per CVE, from the CVE JSON 5 records under "
    "<estate>/bulletins/vulnrichment/ (<year>/<n>xxx/CVE-....json, as the cisagov/vulnrichment "
    "repository lays them out): one row per CVE (the record read last replaces the previous "
    "one), with the record's state and update time, the CISA ADP container's update time and "
    "the SSVC options Exploitation (none, poc, active), Automatable (yes, no) and Technical "
    "Impact (partial, total); NULL when the record carries no CISA SSVC decision."
)


def _ensure_vulnrichment_table(conn: duckdb.DuckDBPyConnection) -> None:
    conn.register("_empty", vulnrichment.to_arrow([], [f.name for f in _PROVENANCE]))
    try:
        conn.execute(f"CREATE TABLE IF NOT EXISTS {VULNRICHMENT_TABLE} AS SELECT * FROM _empty")
    finally:
        conn.unregister("_empty")
    conn.execute(f"COMMENT ON TABLE {VULNRICHMENT_TABLE} IS {sql_literal(_VULNRICHMENT_DESCRIPTION)}")


@warehouse_asset(
    key=key(VULNRICHMENT_TABLE),
    group_name=STAGE3_BULLETINS,
    kinds={"duckdb", "python"},
    # Live mode asks about the CVEs the other channels name.
    deps=[key("raw.msrc_vulnerabilities"), key("raw.osv_advisories"), key("raw.kev_vulnerabilities")],
    description=_VULNRICHMENT_DESCRIPTION,
)
def vulnrichment_ssvc(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, run_settings: RunSettings
) -> dg.MaterializeResult:
    folder = _bulletins_dir(run_settings, "vulnrichment")
    live = run_settings.source == "azure"
    if live:
        with warehouse.get_connection() as conn:
            wanted = (
                [r[0] for r in conn.execute(read_sql("bulletin_vulnrichment_cves")).fetchall()]
                if all(table_exists(conn, t) for t in ("raw.msrc_vulnerabilities", "raw.osv_advisories",
                                                        "raw.kev_vulnerabilities"))
                else []
            )
        with vulnrichment.client_from_env() as client:
            counts = vulnrichment.fetch_records(client, wanted, folder)
        context.log.info(f"Vulnrichment: {len(wanted)} CVEs asked: {counts}")
    files = vulnrichment.record_files(folder) if folder.is_dir() else []
    if not files:
        context.log.warning(
            f"No Vulnrichment records in {folder}: BOD 26-04 uses the policy defaults for every CVE."
        )
    with warehouse.get_connection() as conn, transaction(conn):
        _ensure_vulnrichment_table(conn)
        ingested = set(
            conn.execute(f"SELECT source_file, source_sha256 FROM {VULNRICHMENT_TABLE}").fetchall()
        )
        chosen: dict[str, dict[str, Any]] = {}
        skipped = 0
        for path in files:
            data = path.read_bytes()
            source_file, sha = _relative(path, run_settings), msrc.sha256_bytes(data)
            if (source_file, sha) in ingested:
                skipped += 1
                continue
            row = vulnrichment.parse_record(data, source_file)
            chosen[row["cve"]] = {
                **row, "source_file": source_file, "source_sha256": sha, "ingest_run": context.run.run_id,
            }
        if chosen:
            conn.register("_incoming", vulnrichment.to_arrow(list(chosen.values()), [f.name for f in _PROVENANCE]))
            try:
                conn.execute(f"DELETE FROM {VULNRICHMENT_TABLE} WHERE cve IN (SELECT cve FROM _incoming)")
                conn.execute(f"INSERT INTO {VULNRICHMENT_TABLE} BY NAME SELECT * FROM _incoming")
            finally:
                conn.unregister("_incoming")
        _log_ingest(
            conn, "vulnrichment", context.run.run_id, files_seen=len(files), files_skipped=skipped,
            documents_ingested=len(chosen), live_fetch=live,
        )
        metadata = table_metadata(conn, VULNRICHMENT_TABLE, order_by="cve")
    metadata["ingested_records"] = dg.MetadataValue.int(len(chosen))
    metadata["unchanged_files_skipped"] = dg.MetadataValue.int(skipped)
    return dg.MaterializeResult(metadata=metadata)


# ---- MSRC /updates index and the channels' freshness ----

_INDEX_DESCRIPTION = (
    "The MSRC /updates index last read: one row per document id with its title and release dates "
    "(UTC), fetched live (source=azure, saved as <estate>/bulletins/msrc/updates.json) or read from "
    "that file offline. Each new index replaces the previous one; no index leaves it as it was."
)


def _ensure_index_table(conn: duckdb.DuckDBPyConnection) -> None:
    schema = msrc.INDEX_SCHEMA
    for extra in _PROVENANCE:
        schema = schema.append(extra)
    schema = schema.append(pa.field("fetched_at", pa.timestamp("us", tz="UTC")))
    conn.register("_empty", pa.Table.from_pylist([], schema=schema))
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS raw.msrc_index AS SELECT * FROM _empty")
    finally:
        conn.unregister("_empty")
    literal = sql_literal(_INDEX_DESCRIPTION)
    conn.execute(f"COMMENT ON TABLE raw.msrc_index IS {literal}")


@warehouse_asset(
    key=key("raw.msrc_index"),
    group_name=STAGE3_BULLETINS,
    kinds={"duckdb", "python"},
    description=_INDEX_DESCRIPTION,
)
def msrc_index(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, run_settings: RunSettings
) -> dg.MaterializeResult:
    folder = _bulletins_dir(run_settings, "msrc")
    live = run_settings.source == "azure"
    if live:
        with make_msrc_client() as client:
            body = client.index_bytes()
        msrc.parse_index(body)  # a broken answer fails here, before the saved copy is replaced
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "updates.json").write_bytes(body)
    path = msrc.index_file(folder) if folder.is_dir() else None
    with warehouse.get_connection() as conn, transaction(conn):
        _ensure_index_table(conn)
        read = 0
        if path is None:
            context.log.info(f"No MSRC index ({folder}/updates.json): pending months are not computed.")
        else:
            data = path.read_bytes()
            source_file, sha = _relative(path, run_settings), msrc.sha256_bytes(data)
            held = conn.execute(
                "SELECT count(*) FROM raw.msrc_index WHERE source_sha256 = ?", [sha]
            ).fetchall()[0][0]
            if not held:
                try:
                    rows = msrc.index_rows(msrc.parse_index(data))
                except (ValueError, msrc.MsrcDocumentError) as exc:
                    raise msrc.MsrcDocumentError(f"{source_file}: not an MSRC /updates index ({exc})") from exc
                extra = {
                    "source_file": source_file,
                    "source_sha256": sha,
                    "ingest_run": context.run.run_id,
                    "fetched_at": datetime.now(UTC),
                }
                schema = msrc.INDEX_SCHEMA
                for field in (*_PROVENANCE, pa.field("fetched_at", pa.timestamp("us", tz="UTC"))):
                    schema = schema.append(field)
                conn.register("_incoming", pa.Table.from_pylist([{**r, **extra} for r in rows], schema=schema))
                try:
                    conn.execute("DELETE FROM raw.msrc_index")
                    conn.execute("INSERT INTO raw.msrc_index BY NAME SELECT * FROM _incoming")
                finally:
                    conn.unregister("_incoming")
                read = 1
        _log_ingest(
            conn, "msrc_index", context.run.run_id, files_seen=int(path is not None),
            files_skipped=int(path is not None) - read, documents_ingested=read, live_fetch=live,
        )
        metadata = table_metadata(conn, "raw.msrc_index", order_by="initial_release_at DESC")
    return dg.MaterializeResult(metadata=metadata)


CHANNELS = ("msrc", "kev", "epss", "osv", "vulnrichment")


def configured_channels() -> list[str]:
    """The channels watched: PATCHLEDGER_BULLETIN_CHANNELS (comma-separated), default all five."""
    raw = os.environ.get("PATCHLEDGER_BULLETIN_CHANNELS", "")
    chosen = [c.strip().lower() for c in raw.split(",") if c.strip()] or list(CHANNELS)
    unknown = sorted(set(chosen) - set(CHANNELS))
    if unknown:
        raise ValueError(f"PATCHLEDGER_BULLETIN_CHANNELS names unknown channels {unknown}; known: {CHANNELS}")
    return chosen


@warehouse_asset(
    key=key("marts.bulletin_channels"),
    group_name=STAGE3_BULLETINS,
    kinds={"duckdb", "sql"},
    deps=[
        key(t)
        for t in (
            *MSRC_TABLES.values(), *OSV_TABLES.values(), "raw.kev_vulnerabilities",
            "raw.epss_scores", "raw.msrc_index", VULNRICHMENT_TABLE,
        )
    ] + [EVALUATION_DATE_SOURCE],
    description="One row per configured bulletin channel (msrc, kev, epss, osv, vulnrichment): last successful "
    "ingest, documents and rows held, newest document, staleness as of the evaluation date, and "
    "the MSRC months released but not yet ingested.",
)
def bulletin_channels(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, run_settings: RunSettings
) -> dg.MaterializeResult:
    with warehouse.get_connection() as conn, transaction(conn):
        # A channel never ingested still gets its row: make every input exist.
        _ensure_msrc_tables(conn)
        _ensure_osv_tables(conn)
        _ensure_index_table(conn)
        _ensure_vulnrichment_table(conn)
        conn.execute(KEV_DDL)
        conn.execute(EPSS_DDL)
        conn.execute(INGEST_LOG_DDL)
        as_of = resolve_as_of(conn, run_settings.as_of_date())
        build_table(
            conn,
            "marts.bulletin_channels",
            "bulletin_channels",
            params={
                "as_of": as_of,
                "channels": configured_channels(),
                "msrc_months": int(os.environ.get("PATCHLEDGER_MSRC_MONTHS", "24")),
                "known_empty": sorted(msrc.KNOWN_EMPTY_DOCUMENTS),
            },
        )
        metadata = table_metadata(conn, "marts.bulletin_channels", order_by="channel")
        stale = [
            r[0]
            for r in conn.execute(
                "SELECT channel FROM marts.bulletin_channels WHERE stale ORDER BY channel"
            ).fetchall()
        ]
    metadata["as_of"] = dg.MetadataValue.text(as_of.isoformat())
    metadata["stale_channels"] = dg.MetadataValue.json(stale)
    return dg.MaterializeResult(metadata=metadata)


@warehouse_check(asset=key("marts.bulletin_channels"))
def bulletin_channels_fresh(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    """Every configured bulletin channel holds data no older than its threshold
    (msrc 35 days, kev 7, epss 3, osv 30, vulnrichment 30) as of the evaluation date."""
    with warehouse.get_connection() as conn:
        rows = conn.execute(
            "SELECT channel, status, age_days, stale_after_days, newest_document "
            "FROM marts.bulletin_channels WHERE stale ORDER BY channel"
        ).fetchall()
    return dg.AssetCheckResult(
        passed=not rows,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "stale_channels": dg.MetadataValue.json(
                [
                    {"channel": c, "status": s, "age_days": a, "stale_after_days": t, "newest": n}
                    for c, s, a, t, n in rows
                ]
            )
        },
    )


@warehouse_check(asset=key("marts.bulletin_channels"))
def msrc_months_ingested(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    """Every MSRC month that the /updates index lists as released (within the ingested span) is
    ingested at its current revision. Passes when no index is held."""
    with warehouse.get_connection() as conn:
        rows = conn.execute(
            "SELECT pending_documents FROM marts.bulletin_channels WHERE channel = 'msrc'"
        ).fetchall()
    pending = (rows[0][0] if rows else None) or []
    return dg.AssetCheckResult(
        passed=not pending,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"pending_documents": dg.MetadataValue.json(pending), "count": len(pending)},
    )


# ---- notices of new patches that apply to the estate ----

NOTIFY_WEBHOOK_ENV = "PATCHLEDGER_NOTIFY_WEBHOOK"
WEBHOOK_TIMEOUT_SECONDS = 15.0
WEBHOOK_RETRIES = 3
WEBHOOK_BACKOFF_SECONDS = 2.0

NOTIFICATIONS_DDL = """
CREATE TABLE IF NOT EXISTS ledger.notifications_sent (
    seq BIGINT NOT NULL, notification_id VARCHAR NOT NULL, patch_key VARCHAR NOT NULL,
    kb VARCHAR, title VARCHAR, sources VARCHAR[], severity VARCHAR, max_cvss DOUBLE,
    exploited BOOLEAN, in_kev BOOLEAN, kev_due_date DATE, max_epss DOUBLE, cves VARCHAR[],
    products VARCHAR[], affected_machines BIGINT, released_at TIMESTAMPTZ,
    as_of DATE NOT NULL, notified_at TIMESTAMPTZ NOT NULL, run_id VARCHAR NOT NULL,
    delivery VARCHAR NOT NULL, content VARCHAR NOT NULL, row_sha256 VARCHAR NOT NULL,
    prev_sha256 VARCHAR NOT NULL, chain_sha256 VARCHAR NOT NULL
)
"""
_NOTIFICATIONS_COMMENT = (
    "Append-only record of the notices of new patches (what was notified when): one row per "
    "notice, never updated or deleted: a patch is notified once when new and once more if one "
    "of its CVEs enters KEV afterwards (content.reason new or entered_kev). content is the notice as "
    "canonical JSON (keys sorted), row_sha256 = sha256(content), chain_sha256 = "
    "sha256(prev_sha256 || row_sha256) chains the rows in seq order (64 zeros before the first). "
    "delivery: webhook (POSTed to PATCHLEDGER_NOTIFY_WEBHOOK) or warehouse (recorded only)."
)
_APPLICABILITY_COLUMNS = (
    "patch_key VARCHAR, kb VARCHAR, vm_id VARCHAR, source VARCHAR, matched_on VARCHAR, "
    "matched_product VARCHAR"
)
_NOTICE_FIELDS = (
    "patch_key", "kb", "title", "sources", "severity", "max_cvss", "exploited", "in_kev",
    "kev_due_date", "max_epss", "cves", "products", "affected_machines", "released_at",
    "remediation_url", "reason",
)


class WebhookError(RuntimeError):
    """The notification webhook did not accept the notices (the URL in the message is redacted)."""


def redact_url(url: str) -> str:
    """scheme://host[:port]/path: no user info, query string or fragment (they may hold a token)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def post_webhook(
    url: str,
    payload: dict[str, Any],
    *,
    timeout: float = WEBHOOK_TIMEOUT_SECONDS,
    retries: int = WEBHOOK_RETRIES,
    backoff_seconds: float = WEBHOOK_BACKOFF_SECONDS,
    transport: httpx.BaseTransport | None = None,
) -> int:
    """POST the payload as JSON; retries 5xx, 429 and transport errors with exponential backoff.
    Returns the HTTP status. Errors never carry the URL's query string."""
    safe = redact_url(url)
    body = json.dumps(payload, sort_keys=True, default=str).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "patchledger-notify/1"}
    attempt = 0
    with httpx.Client(timeout=httpx.Timeout(timeout), transport=transport) as client:
        while True:
            try:
                response = client.post(url, content=body, headers=headers)
                if response.status_code < 300:
                    return response.status_code
                problem = f"HTTP {response.status_code}"
                retryable = response.status_code >= 500 or response.status_code == 429
            except httpx.HTTPError as exc:  # connect errors, timeouts; messages may embed the URL
                problem, retryable = type(exc).__name__, True
            attempt += 1
            if not retryable or attempt > retries:
                # `from None`: the httpx exception text can contain the full URL.
                raise WebhookError(
                    f"notification webhook {safe} failed after {attempt} attempt(s): {problem}"
                ) from None
            time.sleep(backoff_seconds * 2 ** (attempt - 1))


def _notice_payload(run_id: str, as_of: date, notices: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "event": "patchledger.new_patches",
        "run_id": run_id,
        "as_of": as_of.isoformat(),
        "count": len(notices),
        "notifications": notices,
    }


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return value


_NOTIFICATION_TABLES = (
    "staging.patch_applicability",
    "staging.notification_candidates",
    "ledger.notifications_sent",
    "marts.patch_notifications",
)
_NOTIFICATION_DESCRIPTIONS = {
    "staging.patch_applicability": "Which machines each catalog patch applies to: MSRC product "
    "names found in marts.vm_inventory os_name; OSV packages observed on the machine "
    "(staging.patch_observations) on the advisory's distribution and release.",
    "staging.notification_candidates": "The patches this run notifies: applicable, released in the "
    "lookback window (PATCHLEDGER_NOTIFY_LOOKBACK_DAYS, default 35) and never notified before, or "
    "notified before one of their CVEs entered KEV and in KEV now.",
    "ledger.notifications_sent": _NOTIFICATIONS_COMMENT,
    "marts.patch_notifications": "Notices of new patches that apply to the estate: every patch "
    "notified (severity, exploited, KEV, affected machines then and now), when and how.",
}


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            key(table),
            description=_NOTIFICATION_DESCRIPTIONS[table],
            group_name=STAGE3_BULLETINS,
            kinds={"duckdb", "sql"},
            owners=OWNERS,
            deps=[
                key("marts.patch_catalog"),
                key("staging.msrc_fixes"),
                key("staging.osv_fixes"),
                key("marts.vm_inventory"),
                key("staging.patch_observations"),
            ],
        )
        for table in _NOTIFICATION_TABLES
    ],
    pool=DUCKDB_POOL,
)
def patch_notifications(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, run_settings: RunSettings
):
    """Notify the patches new since the previous notification run that apply to the estate:
    append them to ledger.notifications_sent and, when PATCHLEDGER_NOTIFY_WEBHOOK is set, POST
    them as JSON first (a webhook failure fails the step and records nothing, so the next run
    notifies them again: delivery is at least once)."""
    webhook = os.environ.get(NOTIFY_WEBHOOK_ENV, "").strip()
    lookback = int(os.environ.get("PATCHLEDGER_NOTIFY_LOOKBACK_DAYS", "35"))
    with warehouse.get_connection() as conn, transaction(conn):
        conn.execute(NOTIFICATIONS_DDL)
        literal = sql_literal(_NOTIFICATIONS_COMMENT)
        conn.execute(f"COMMENT ON TABLE ledger.notifications_sent IS {literal}")
        comment_ledger(conn)
        as_of = resolve_as_of(conn, run_settings.as_of_date())

        missing = [
            t for t in ("marts.vm_inventory", "staging.patch_observations") if not table_exists(conn, t)
        ]
        if missing:
            context.log.warning(f"{missing} not built yet: no patch applies to the estate, nothing notified.")
            conn.execute(f"CREATE OR REPLACE TABLE staging.patch_applicability ({_APPLICABILITY_COLUMNS})")
            comment_table(conn, "staging.patch_applicability", "bulletin_patch_applicability")
        else:
            build_table(conn, "staging.patch_applicability", "bulletin_patch_applicability")
        build_table(
            conn,
            "staging.notification_candidates",
            "bulletin_notification_candidates",
            params={"as_of": as_of, "lookback_days": lookback},
        )
        cursor = conn.execute(f"SELECT {', '.join(_NOTICE_FIELDS)} FROM staging.notification_candidates")
        names = [d[0] for d in cursor.description]
        candidates = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

        head = conn.execute(
            "SELECT seq, chain_sha256 FROM ledger.notifications_sent ORDER BY seq DESC LIMIT 1"
        ).fetchall()
        seq, prev = (head[0][0], head[0][1]) if head else (0, GENESIS)
        notified_at = datetime.now(UTC)
        delivery = "webhook" if webhook else "warehouse"
        notices, ledger_rows = [], []
        for candidate in candidates:
            # A second notice of a patch (it entered KEV) has an id of its own.
            ident = candidate["patch_key"] + ("" if candidate["reason"] == "new" else f"|{candidate['reason']}")
            notice = {
                "notification_id": hashlib.sha256(ident.encode()).hexdigest()[:16],
                **{k: _json_value(v) for k, v in candidate.items()},
            }
            content = json.dumps(notice, sort_keys=True, default=str)
            row_sha = hashlib.sha256(content.encode()).hexdigest()
            chain = chain_hash(prev, row_sha)
            seq += 1
            ledger_rows.append(
                {
                    "seq": seq,
                    "notification_id": notice["notification_id"],
                    # The ledger's columns; remediation_url and reason are in `content`.
                    **{k: candidate[k] for k in _NOTICE_FIELDS if k not in ("remediation_url", "reason")},
                    "as_of": as_of,
                    "notified_at": notified_at,
                    "run_id": context.run.run_id,
                    "delivery": delivery,
                    "content": content,
                    "row_sha256": row_sha,
                    "prev_sha256": prev,
                    "chain_sha256": chain,
                }
            )
            notices.append(notice)
            prev = chain

        if notices and webhook:
            status = post_webhook(webhook, _notice_payload(context.run.run_id, as_of, notices))
            context.log.info(
                f"Notification webhook {redact_url(webhook)} accepted {len(notices)} notices (HTTP {status})."
            )
        if ledger_rows:
            conn.register("_incoming", pa.Table.from_pylist(ledger_rows))
            try:
                conn.execute("INSERT INTO ledger.notifications_sent BY NAME SELECT * FROM _incoming")
            finally:
                conn.unregister("_incoming")
        build_table(
            conn,
            "marts.patch_notifications",
            "bulletin_patch_notifications",
            params={"run_id": context.run.run_id},
        )
        context.log.info(
            f"Notifications as of {as_of}: {len(notices)} new "
            f"({[n['patch_key'] for n in notices[:20]]}), delivery {delivery}."
        )
        metadata = {
            "staging.patch_applicability": table_metadata(conn, "staging.patch_applicability"),
            "staging.notification_candidates": table_metadata(conn, "staging.notification_candidates"),
            "ledger.notifications_sent": table_metadata(conn, "ledger.notifications_sent", order_by="seq DESC"),
            "marts.patch_notifications": table_metadata(conn, "marts.patch_notifications", order_by="seq DESC"),
        }
    metadata["marts.patch_notifications"]["new_notifications"] = dg.MetadataValue.int(len(notices))
    metadata["marts.patch_notifications"]["delivery"] = dg.MetadataValue.text(delivery)
    for table in _NOTIFICATION_TABLES:
        yield dg.MaterializeResult(asset_key=key(table), metadata=metadata[table])
