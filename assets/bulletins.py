"""Stage 3: vendor bulletins (MSRC CVRF, CISA KEV, FIRST EPSS) and the patch catalog.

Raw tables accumulate: each MSRC document replaces only its own rows (keyed by document id), each
KEV catalog and EPSS day is a dated snapshot, so the marts can be computed "as of" a date and a
month that MSRC serves empty or mis-titled fails the step without touching what was ingested.
Files whose sha256 is already ingested are not parsed again.
"""


import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pyarrow as pa

from assets.common import (
    DUCKDB_POOL,
    OWNERS,
    STAGE3_BULLETINS,
    key,
    warehouse_asset,
    warehouse_check,
)
from pipelines.connectors import epss, kev, msrc
from pipelines.resources import RunSettings, WarehouseResource
from pipelines.warehouse import (
    build_table,
    resolve_as_of,
    row_count,
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
        # COMMENT takes no bound parameters in DuckDB: a quoted literal of our own constant text.
        literal = "'" + _MSRC_DESCRIPTIONS[name].replace("'", "''") + "'"
        conn.execute(f"COMMENT ON TABLE {table} IS {literal}")


def make_msrc_client() -> msrc.MsrcClient:
    """The live MSRC client (tests replace this function to serve recorded answers)."""
    return msrc.MsrcClient(os.environ.get("PATCHLEDGER_MSRC_URL", msrc.DEFAULT_BASE_URL))


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
                "ingest_run": context.run_id,
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
    <estate>/bulletins/kev/ (JSON feed or CSV): one row per snapshot and CVE, text trimmed,
    cwes as a list, snapshot dated by catalogVersion / dateReleased."""
    folder = _bulletins_dir(run_settings, "kev")
    files = kev.kev_files(folder) if folder.is_dir() else []
    if not files:
        context.log.warning(f"No KEV catalog in {folder}: KEV flags will be false.")
    with warehouse.get_connection() as conn, transaction(conn):
        conn.execute(KEV_DDL)
        for path in files:
            source_file = _relative(path, run_settings)
            sha = msrc.sha256_bytes(path.read_bytes())
            if conn.execute(
                "SELECT count(*) FROM raw.kev_vulnerabilities WHERE source_file = ? AND source_sha256 = ?",
                [source_file, sha],
            ).fetchall()[0][0]:
                continue
            snapshot = kev.read_kev(conn, path)
            conn.register("_kev", snapshot)
            try:
                # A snapshot read again (same catalog version) replaces itself.
                conn.execute(
                    "DELETE FROM raw.kev_vulnerabilities WHERE catalog_version IN "
                    "(SELECT DISTINCT catalog_version FROM _kev)"
                )
                conn.execute(
                    "INSERT INTO raw.kev_vulnerabilities BY NAME "
                    "SELECT *, ? AS source_file, ? AS source_sha256, ? AS ingest_run FROM _kev",
                    [source_file, sha, context.run_id],
                )
            finally:
                conn.unregister("_kev")
            context.log.info(f"KEV: {snapshot.num_rows} entries from {source_file}")
        return dg.MaterializeResult(metadata=table_metadata(conn, "raw.kev_vulnerabilities"))


@warehouse_asset(
    key=key("raw.epss_scores"),
    group_name=STAGE3_BULLETINS,
    kinds={"duckdb", "sql"},
)
def epss_scores(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, run_settings: RunSettings
) -> dg.MaterializeResult:
    """FIRST EPSS daily scores from <estate>/bulletins/epss/epss_scores-YYYY-MM-DD.csv.gz: one
    row per score date and CVE, with the model version from the file's comment line."""
    folder = _bulletins_dir(run_settings, "epss")
    files = epss.epss_files(folder) if folder.is_dir() else []
    if not files:
        context.log.warning(f"No EPSS files in {folder}: EPSS scores will be NULL.")
    with warehouse.get_connection() as conn, transaction(conn):
        conn.execute(EPSS_DDL)
        for path in files:
            source_file = _relative(path, run_settings)
            sha = msrc.sha256_bytes(path.read_bytes())
            if conn.execute(
                "SELECT count(*) FROM raw.epss_scores WHERE source_file = ? AND source_sha256 = ? LIMIT 1",
                [source_file, sha],
            ).fetchall()[0][0]:
                continue
            scores = epss.read_epss(conn, path)
            conn.register("_epss", scores)
            try:
                conn.execute(
                    "DELETE FROM raw.epss_scores WHERE score_date IN (SELECT DISTINCT score_date FROM _epss)"
                )
                conn.execute(
                    "INSERT INTO raw.epss_scores BY NAME "
                    "SELECT *, ? AS source_file, ? AS source_sha256, ? AS ingest_run FROM _epss",
                    [source_file, sha, context.run_id],
                )
            finally:
                conn.unregister("_epss")
            context.log.info(f"EPSS: {scores.num_rows} scores from {source_file}")
        return dg.MaterializeResult(
            metadata=table_metadata(conn, "raw.epss_scores", order_by="score_date DESC, cve")
        )


def _sql_asset(
    table: str,
    sql_name: str,
    deps: list[str],
    description: str,
    uses_as_of: bool = False,
) -> dg.AssetsDefinition:
    @warehouse_asset(
        key=key(table),
        group_name=STAGE3_BULLETINS,
        kinds={"duckdb", "sql"},
        deps=[key(d) for d in deps],
        description=description,
    )
    def _build(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, run_settings: RunSettings
    ) -> dg.MaterializeResult:
        with warehouse.get_connection() as conn, transaction(conn):
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
    ["staging.msrc_fixes", "raw.kev_vulnerabilities", "raw.epss_scores"],
    "Patch x CVE x product with MSRC severity and CVSS, exploit status, KEV and EPSS as of the "
    "evaluation date.",
    uses_as_of=True,
)
patch_catalog = _sql_asset(
    "marts.patch_catalog",
    "patch_catalog",
    [
        "staging.msrc_fixes",
        "marts.patch_cves",
        "marts.patch_supersedence",
        "marts.patch_fix_lineage",
    ],
    "The patch catalog: one row per patch with severity, CVSS, exploit/KEV status, products, "
    "fixed builds, supersedence and fix lineage.",
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
