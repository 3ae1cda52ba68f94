"""Stage 3: the patch catalog derived from the vendor bulletins (MSRC fixes, OSV fixes,
supersedence, CVEs with KEV, EPSS and Vulnrichment, BOD 26-04 tiers), one `sql/` file each.

The raw bulletin tables come from their sources, one folder each under `pipelines/sources/`
(msrc, kev, epss, osv, vulnrichment; `bulletins/` holds what they share and the channels'
freshness mart); the notices of new patches are `assets/notifications.py`.
"""

from datetime import date

import dagster as dg

from assets.common import (
    EVALUATION_DATE_SOURCE,
    STAGE3_BULLETINS,
    key,
    warehouse_asset,
    warehouse_check,
)
from pipelines.resources import RunSettings, WarehouseResource
from pipelines.sources.msrc.assets import MSRC_TABLES
from pipelines.sources.osv.assets import OSV_TABLES
from pipelines.sources.vulnrichment.assets import ensure_vulnrichment_table
from pipelines.warehouse import build_table, resolve_as_of, table_metadata, transaction


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
    "Direct supersedence edges: the later patch kb replaces superseded_kb (released by the "
    "evaluation date).",
    uses_as_of=True,
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
    ensure_inputs=ensure_vulnrichment_table,
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


osv_fixes = _sql_asset(
    "staging.osv_fixes",
    "bulletin_osv_fixes",
    list(OSV_TABLES.values()),
    "OSV advisory fixes normalized: advisory x CVE x ecosystem x package x fixed version, with "
    "the <package>_<version> patch key and an MSRC-scale severity.",
)
