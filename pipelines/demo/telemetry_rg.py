"""Resource Graph exports of the demo: daily patch assessment and installation result files."""

from __future__ import annotations

from pathlib import Path

import duckdb

from .period import Period
from .telemetry_sql import copy_all

RG_ASSESS = "microsoft.compute/virtualmachines/patchassessmentresults"
RG_INSTALL = "microsoft.compute/virtualmachines/patchinstallationresults"

_ROW_HEAD = """
    location := v.location, resourceGroup := lower(v.resource_group),
    subscriptionId := v.subscription
"""
_PATCH_PROPS = """
    patchName := CASE WHEN p.p_os = 'Linux' THEN p.package ELSE p.title END,
    kbId := p.kb,
    version := p.version,
    classifications := [p.classification],
    msrcSeverity := p.severity,
    rebootBehavior := p.reboot,
    publishedDateTime := CASE WHEN p.p_os = 'Windows' THEN ts(p.release_us) END
"""


def write_resource_graph(con: duckdb.DuckDBPyConnection, root: Path, period: Period) -> dict[str, int]:
    folder = root / "azure" / "resource_graph"
    folder.mkdir(parents=True, exist_ok=True)
    con.execute(
        """
        CREATE TABLE counts AS
        SELECT m.vm, m.day,
               count(*) FILTER (WHERE p.classification = 'Security') AS security,
               count(*) FILTER (WHERE p.classification = 'Updates') AS updates,
               count(*) FILTER (WHERE p.classification = 'Other') AS other
        FROM missing m JOIN patches p USING (patch) GROUP BY ALL
        """
    )
    assessed = con.execute(
        "SELECT count(*) FROM assess a JOIN vms v USING (vm) WHERE v.source IN ('rg', 'both')"
    ).fetchone()[0]
    software = con.execute(
        "SELECT count(*) FROM missing a JOIN vms v USING (vm) WHERE v.source IN ('rg', 'both')"
    ).fetchone()[0]
    statements = [
        f"""
            COPY (
              SELECT count(*) AS totalRecords, count(*) AS count, list(r ORDER BY k1, k2) AS data FROM (
                SELECT v.vm AS k1, '' AS k2, struct_pack(
                  id := v.arm_id || '/patchAssessmentResults/latest', name := 'latest',
                  type := '{RG_ASSESS}', {_ROW_HEAD},
                  properties := to_json(struct_pack(
                    status := 'Succeeded',
                    assessmentActivityId := guid(seed() || ':assess:' || v.vm || ':' || a.day),
                    rebootPending := a.reboot,
                    availablePatchCountByClassification := CASE WHEN v.os_type = 'Windows'
                      THEN to_json(struct_pack(security := coalesce(c.security, 0), critical := 0,
                        definition := 0, updateRollup := 0, featurePack := 0, servicePack := 0,
                        tools := 0, updates := coalesce(c.updates, 0)))
                      ELSE to_json(struct_pack(security := coalesce(c.security, 0),
                        other := coalesce(c.other, 0))) END,
                    startDateTime := ts(a.t), lastModifiedDateTime := ts(a.t + 95000000),
                    osType := v.os_type, startedBy := 'Platform',
                    patchServiceUsed := CASE WHEN v.os_type = 'Windows' THEN 'WU' ELSE 'APT' END,
                    errorDetails := NULL::JSON))) AS r
                FROM assess a JOIN vms v USING (vm) LEFT JOIN counts c USING (vm, day)
                WHERE a.day = {d} AND v.source IN ('rg', 'both')
                UNION ALL
                SELECT v.vm, p.patch_id, struct_pack(
                  id := v.arm_id || '/patchAssessmentResults/latest/softwarePatches/' || p.patch_id,
                  name := p.patch_id, type := '{RG_ASSESS}/softwarepatches', {_ROW_HEAD},
                  properties := to_json(struct_pack({_PATCH_PROPS},
                    lastModifiedDateTime := ts(m.t + 95000000))))
                FROM missing m JOIN vms v USING (vm) JOIN patches p USING (patch)
                WHERE m.day = {d} AND v.source IN ('rg', 'both')
              )
            ) TO '{folder / f"patchassessmentresources-{day.isoformat()}.json"}' (FORMAT json)
            """
        for d, day in enumerate(period.dates())
    ]
    con.execute(
        """
        CREATE TABLE run_rows AS
        SELECT r.*, v.* EXCLUDE (vm), guid(seed() || ':run:' || r.vm || ':' || r.slot) AS act,
               count(c.patch) FILTER (WHERE c.state = 'Installed') AS installed,
               count(c.patch) FILTER (WHERE c.state = 'Failed') AS failed,
               count(c.patch) FILTER (WHERE c.state = 'Excluded') AS excluded,
               count(c.patch) FILTER (WHERE c.state = 'NotSelected') AS not_selected,
               bool_or(c.state = 'Installed' AND p.reboot <> 'NeverReboots') AS rebooted
        FROM runs r JOIN vms v USING (vm)
        LEFT JOIN children c USING (vm, slot) LEFT JOIN patches p USING (patch)
        GROUP BY ALL
        """
    )
    installs = con.execute("SELECT count(*) FROM run_rows WHERE source IN ('rg', 'both')").fetchone()[0]
    statements += [
        f"""
            COPY (
              SELECT count(*) AS totalRecords, count(*) AS count, coalesce(list(r ORDER BY k1, k2, k3), []) AS data FROM (
                SELECT v.vm AS k1, v.slot AS k2, '' AS k3, struct_pack(
                  id := v.arm_id || '/patchInstallationResults/' || v.act, name := v.act,
                  type := '{RG_INSTALL}', {_ROW_HEAD},
                  properties := to_json(struct_pack(
                    installationActivityId := v.act,
                    status := CASE WHEN v.failed > 0 THEN 'Failed' ELSE 'Succeeded' END,
                    rebootStatus := CASE WHEN v.reboot_required THEN 'Required'
                      WHEN v.rebooted THEN 'Completed' ELSE 'NotNeeded' END,
                    maintenanceWindowExceeded := false,
                    installedPatchCount := v.installed, failedPatchCount := v.failed,
                    pendingPatchCount := 0, excludedPatchCount := v.excluded,
                    notSelectedPatchCount := v.not_selected,
                    startDateTime := ts(v.t),
                    lastModifiedDateTime := ts(v.t + (600 + 240 * (v.installed + v.failed)) * 1000000),
                    startedBy := 'Platform',
                    patchServiceUsed := CASE WHEN v.os_type = 'Windows' THEN 'WU' ELSE 'APT' END,
                    osType := v.os_type,
                    maintenanceRunId := lower('/subscriptions/' || v.subscription
                      || '/resourceGroups/rg-maintenance/providers/Microsoft.Maintenance/maintenanceConfigurations/'
                      || v."window"),
                    errorDetails := CASE WHEN v.failed > 0 THEN to_json(struct_pack(
                      code := 'PatchInstallationFailure',
                      message := v.failed || ' patch(es) failed to install',
                      details := []::VARCHAR[])) END))) AS r
                FROM run_rows v WHERE v.day = {d} AND v.source IN ('rg', 'both')
                UNION ALL
                SELECT v.vm, v.slot, p.patch_id, struct_pack(
                  id := v.arm_id || '/patchInstallationResults/' || v.act || '/softwarePatches/' || p.patch_id,
                  name := p.patch_id, type := '{RG_INSTALL}/softwarepatches', {_ROW_HEAD},
                  properties := to_json(struct_pack(
                    installationState := c.state, {_PATCH_PROPS},
                    rebootRequired := c.state = 'Installed' AND p.reboot <> 'NeverReboots',
                    lastModifiedDateTime := ts(v.t + 300000000))))
                FROM run_rows v JOIN children c USING (vm, slot) JOIN patches p USING (patch)
                WHERE v.day = {d} AND v.source IN ('rg', 'both')
              )
            ) TO '{folder / f"patchinstallationresources-{day.isoformat()}.json"}' (FORMAT json)
            """
        for d, day in enumerate(period.dates())
    ]
    copy_all(con, statements)
    return {
        "rg_assessment_files": period.days,
        "rg_assessment_rows": assessed,
        "rg_missing_patch_rows": software,
        "rg_installation_runs": installs,
    }


