"""Stage 3: the patch catalog derived from the vendor bulletins (MSRC fixes, OSV fixes,
supersedence, CVEs with KEV, EPSS and Vulnrichment, BOD 26-04 tiers), one `sql/` file each.

The raw bulletin tables come from their sources, one folder each under `pipelines/sources/`
(msrc, kev, epss, osv, vulnrichment; `bulletins/` holds what they share and the channels'
freshness mart); the notices of new patches are `assets/notifications.py`.
"""

import dagster as dg

from pipelines.sources.vulnrichment.assets import ensure_vulnrichment_table
from pipelines.tables import TableCheck, sql_table_asset


def _supersedence_cycles(conn) -> dg.AssetCheckResult:
    """MSRC supersedence has no cycles (a cycle is data noise: reported, never looped on)."""
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


# One sql/<table>.sql each; its header gives the deps, group and description (pipelines/tables.py).
msrc_fixes = sql_table_asset("staging.msrc_fixes")
osv_fixes = sql_table_asset("staging.osv_fixes")
patch_supersedence = sql_table_asset("marts.patch_supersedence")
patch_supersedence_closure = sql_table_asset("marts.patch_supersedence_closure", checks=[TableCheck(
    "supersedence_cycles", _supersedence_cycles, description=_supersedence_cycles.__doc__)])
patch_fix_lineage = sql_table_asset("marts.patch_fix_lineage")
patch_fixed_builds = sql_table_asset("marts.patch_fixed_builds")
# A channel never ingested is an empty table (created by `before`, which reads nothing: it may skip).
patch_cves = sql_table_asset("marts.patch_cves", before=lambda conn, _: ensure_vulnrichment_table(conn),
                             skip_unchanged=True)
patch_bod2604 = sql_table_asset("marts.patch_bod2604")
# With the patch_catalog_key_unique check of its header.
patch_catalog = sql_table_asset("marts.patch_catalog")

