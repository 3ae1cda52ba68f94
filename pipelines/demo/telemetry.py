"""Writes what Azure and Log Analytics would have recorded, in their export formats, via DuckDB.

The simulation's numpy arrays are registered as Arrow tables; each output file is one
`COPY (SELECT ...)` with an ORDER BY, so files are byte-identical for a seed. Activity ids are
md5-derived GUIDs of (seed, machine, day or run), never random at write time.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from .catalog import Catalog
from .fleet import Fleet
from .period import DAY_US, Period
from .simulate import STATE_NAMES, Simulation

RG_ASSESS = "microsoft.compute/virtualmachines/patchassessmentresults"
RG_INSTALL = "microsoft.compute/virtualmachines/patchinstallationresults"

_MACROS = """
CREATE MACRO guid(s) AS
    substr(md5(s), 1, 8) || '-' || substr(md5(s), 9, 4) || '-4' || substr(md5(s), 14, 3)
    || '-8' || substr(md5(s), 18, 3) || '-' || substr(md5(s), 21, 12);
CREATE MACRO ts(us) AS strftime(make_timestamp(us), '%Y-%m-%dT%H:%M:%S.%fZ');
-- The portal's "Export to CSV" display format: 5/25/2023, 4:32:49.469 AM
CREATE MACRO portal_ts(us) AS strftime(make_timestamp(us), '%-m/%-d/%Y, %-I:%M:%S.%g %p');
-- Linux agents report the VM GUID with its first three groups byte-swapped.
CREATE MACRO swapped(g) AS
    substr(g, 7, 2) || substr(g, 5, 2) || substr(g, 3, 2) || substr(g, 1, 2) || '-'
    || substr(g, 12, 2) || substr(g, 10, 2) || '-' || substr(g, 17, 2) || substr(g, 15, 2)
    || substr(g, 19);
"""


@dataclass
class Observations:
    assess: pa.Table  # vm, day, t, reboot
    missing: pa.Table  # vm, day, t, patch
    la_state: pa.Table  # vm, day, t, patch, needed


def observe(sim: Simulation, fleet: Fleet, period: Period, rng: np.random.Generator) -> Observations:
    """Daily assessments: per machine a time of day, per pair the installed and the newest patch."""
    n = len(fleet)
    offset = rng.integers(0, 22 * 60, n) * 60_000_000
    reports_la = np.isin(fleet.col("source"), ["la", "both"])
    assess, missing, la_state = [], [], []
    pairs = np.arange(len(sim.pair_vm))
    vm_p = sim.pair_vm
    for d in range(period.days):
        t = period.start_us + d * DAY_US + offset + rng.integers(0, 1_800_000_000, n)
        present = t <= sim.report_until
        vms = np.flatnonzero(present)
        assess.append((vms, np.full(len(vms), d), t[vms], t[vms] >= sim.reboot_from[vms]))
        t_p = t[vm_p]
        level = sim.levels_at(pairs, t_p)
        top = sim.top_at(pairs, t_p)
        gap = present[vm_p] & (top > level)
        idx = np.flatnonzero(gap)
        missing.append((vm_p[idx], np.full(len(idx), d), t_p[idx], sim.chain_mat[sim.pair_chain[idx], top[idx]]))
        # The legacy agent also lists what is installed, once per assessment.
        inst = np.flatnonzero(present[vm_p] & reports_la[vm_p] & (level >= 0))
        need = idx[reports_la[vm_p[idx]]]
        for rows, position, needed in ((inst, level, False), (need, top, True)):
            la_state.append(
                (vm_p[rows], np.full(len(rows), d), t_p[rows],
                 sim.chain_mat[sim.pair_chain[rows], position[rows]], np.full(len(rows), needed))
            )

    def table(chunks, names):
        return pa.table({k: np.concatenate([c[i] for c in chunks]) for i, k in enumerate(names)})

    return Observations(
        assess=table(assess, ["vm", "day", "t", "reboot"]),
        missing=table(missing, ["vm", "day", "t", "patch"]),
        la_state=table(la_state, ["vm", "day", "t", "patch", "needed"]),
    )


def _patches_frame(catalog: Catalog) -> pd.DataFrame:
    ps = catalog.patches
    return pd.DataFrame(
        {
            "patch": np.arange(len(ps)),
            "patch_key": [p.key for p in ps],
            "kb": [p.kb for p in ps],
            "title": [p.title for p in ps],
            "classification": [p.classification for p in ps],
            "la_classification": [p.la_classification for p in ps],
            "severity": [p.severity if p.os_type == "Windows" else None for p in ps],
            "reboot": [p.reboot for p in ps],
            "release_us": [p.release_us for p in ps],
            "package": [p.package for p in ps],
            "version": [p.version for p in ps],
            "patch_id": [p.patch_id for p in ps],
            "guid": [p.guid for p in ps],
            "cves": [",".join(p.cves) for p in ps],
            "p_os": [p.os_type for p in ps],
        }
    )


def _runs(sim: Simulation, period: Period) -> tuple[pa.Table, pa.Table]:
    """Install runs inside the period and their patch lines (attempts plus planted extras)."""
    vm, slot = np.nonzero(sim.run_on)
    t = sim.run_time[vm, slot]
    keep = (t >= period.start_us) & (t <= period.end_us)
    vm, slot, t = vm[keep], slot[keep], t[keep]
    runs = pa.table(
        {"vm": vm, "slot": slot, "t": t, "day": (t - period.start_us) // DAY_US,
         "reboot_required": sim.reboot_run[vm, slot]}
    )
    a = sim.attempts
    extra = np.array(sim.extra_children, dtype=np.int64).reshape(-1, 4)
    children = pa.table(
        {
            "vm": np.concatenate([a["vm"], extra[:, 0]]),
            "slot": np.concatenate([a["slot"], extra[:, 1]]),
            "patch": np.concatenate([a["patch"], extra[:, 2]]),
            "state": np.asarray(STATE_NAMES, dtype=object)[np.concatenate([a["state"], extra[:, 3]])],
        }
    )
    return runs, children


def write_telemetry(
    root: Path, catalog: Catalog, fleet: Fleet, sim: Simulation, obs: Observations,
    period: Period, seed: int, snapshots: pd.DataFrame,
) -> dict[str, int]:
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    con.execute(_MACROS)
    runs, children = _runs(sim, period)
    inputs = {
        "vms": fleet.vms.assign(vm=np.arange(len(fleet))),
        "patches": _patches_frame(catalog),
        "assess": obs.assess,
        "missing": obs.missing,
        "la_state": obs.la_state,
        "runs": runs,
        "children": children,
    }
    # Real tables, not registered views: the parallel writers use their own cursors, which
    # see the database's tables but not another connection's registrations.
    for name, frame in inputs.items():
        con.register(f"{name}_input", frame)
        con.execute(f"CREATE TABLE {name} AS SELECT * FROM {name}_input")
        con.unregister(f"{name}_input")
    con.execute(f"CREATE MACRO seed() AS '{int(seed)}'")
    counts = {}
    counts.update(_write_vms(con, root, period, snapshots))
    counts.update(_write_resource_graph(con, root, period))
    counts.update(_write_log_analytics(con, root, period))
    con.close()
    return counts


def _copy_all(con: duckdb.DuckDBPyConnection, statements: list[str]) -> None:
    """Run the per-day COPY statements on parallel cursors: JSON/CSV encoding is the bottleneck
    and one statement keeps a single core busy."""
    workers = min(4, os.cpu_count() or 1)

    def run(chunk: list[str]) -> None:
        cursor = con.cursor()
        for statement in chunk:
            cursor.execute(statement)
        cursor.close()

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(run, [statements[i::workers] for i in range(workers)]))


def _write_vms(con: duckdb.DuckDBPyConnection, root: Path, period: Period, snapshots) -> dict[str, int]:
    """One `az vm list --show-details` file per dated snapshot (azure/virtual_machines/), with the
    patch settings and environment tag of that snapshot (demo/auto_updates.py)."""
    folder = root / "azure" / "virtual_machines"
    folder.mkdir(parents=True, exist_ok=True)
    con.register("snap_input", snapshots)
    con.execute("CREATE TABLE snap AS SELECT * FROM snap_input")
    con.unregister("snap_input")
    for k, captured_us in con.execute("SELECT DISTINCT snapshot, captured_us FROM snap ORDER BY 1").fetchall():
        stamp = con.execute(f"SELECT strftime(make_timestamp({captured_us}), '%Y%m%dT%H%M%SZ')").fetchone()[0]
        _write_vm_snapshot(con, folder / f"virtual_machines-{stamp}.json", period, k)
    return {"virtual_machines": con.execute("SELECT count(*) FROM vms WHERE kind = 'azure_vm'").fetchone()[0],
            "inventory_snapshots": con.execute("SELECT count(DISTINCT snapshot) FROM snap").fetchone()[0]}


def _write_vm_snapshot(con: duckdb.DuckDBPyConnection, path: Path, period: Period, k: int) -> None:
    sub_base = "'/subscriptions/' || subscription || '/resourceGroups/' || resource_group"
    con.execute(
        f"""
        COPY (
          SELECT
            CASE WHEN role = 'web' THEN struct_pack(id := {sub_base}
                 || '/providers/Microsoft.Compute/availabilitySets/AS-' || upper(role)) END
              AS availabilitySet,
            struct_pack(bootDiagnostics := struct_pack(enabled := true, storageUri := NULL::VARCHAR))
              AS diagnosticsProfile,
            '' AS fqdns,
            struct_pack(vmSize := vm_size) AS hardwareProfile,
            arm_id AS id,
            CASE WHEN os_type = 'Windows' THEN 'Windows_Server' END AS licenseType,
            location,
            name,
            struct_pack(networkInterfaces := [struct_pack(id := {sub_base}
                || '/providers/Microsoft.Network/networkInterfaces/' || name || '-nic',
                resourceGroup := resource_group)]) AS networkProfile,
            struct_pack(
              adminUsername := 'azureadmin',
              computerName := computer,
              linuxConfiguration := CASE WHEN os_type = 'Linux' THEN struct_pack(
                disablePasswordAuthentication := true,
                patchSettings := struct_pack(
                  assessmentMode := CASE WHEN source = 'la' THEN 'ImageDefault' ELSE 'AutomaticByPlatform' END,
                  automaticByPlatformSettings := CASE WHEN s.patch_mode = 'AutomaticByPlatform' THEN struct_pack(
                    bypassPlatformSafetyChecksOnUserSchedule := s.bypass, rebootSetting := 'IfRequired') END,
                  patchMode := s.patch_mode),
                provisionVMAgent := true) END,
              secrets := []::VARCHAR[],
              windowsConfiguration := CASE WHEN os_type = 'Windows' THEN struct_pack(
                enableAutomaticUpdates := s.enable_au,
                patchSettings := struct_pack(
                  assessmentMode := CASE WHEN source = 'la' THEN 'ImageDefault' ELSE 'AutomaticByPlatform' END,
                  automaticByPlatformSettings := CASE WHEN s.patch_mode = 'AutomaticByPlatform' THEN struct_pack(
                    bypassPlatformSafetyChecksOnUserSchedule := s.bypass, rebootSetting := 'IfRequired') END,
                  enableHotpatching := product_id = '12436',
                  patchMode := s.patch_mode),
                provisionVMAgent := true,
                timeZone := 'UTC') END
            ) AS osProfile,
            CASE WHEN deallocated THEN 'VM deallocated' ELSE 'VM running' END AS powerState,
            '10.' || (vm // 65536 % 256) || '.' || (vm // 256 % 256) || '.' || (vm % 256) AS privateIps,
            'Succeeded' AS provisioningState,
            '' AS publicIps,
            resource_group AS resourceGroup,
            struct_pack(
              dataDisks := []::VARCHAR[],
              imageReference := CASE WHEN os_type = 'Windows' THEN struct_pack(
                  exactVersion := CASE product_id WHEN '10816' THEN '14393.8066.251110'
                    WHEN '11571' THEN '17763.8027.251110' WHEN '11923' THEN '20348.4405.251110'
                    ELSE '26100.7171.251110' END,
                  offer := 'WindowsServer', publisher := 'MicrosoftWindowsServer',
                  sku := CASE product_id WHEN '10816' THEN '2016-Datacenter'
                    WHEN '11571' THEN '2019-Datacenter' WHEN '11923' THEN '2022-datacenter-azure-edition'
                    ELSE '2025-datacenter-azure-edition' END,
                  version := 'latest')
                ELSE struct_pack(exactVersion := '22.04.202511100', offer := '0001-com-ubuntu-server-jammy',
                  publisher := 'Canonical', sku := '22_04-lts-gen2', version := 'latest') END,
              osDisk := struct_pack(
                caching := 'ReadWrite', createOption := 'FromImage',
                diskSizeGB := CASE WHEN os_type = 'Windows' THEN 127 ELSE 30 END,
                managedDisk := struct_pack(id := {sub_base} || '/providers/Microsoft.Compute/disks/'
                  || name || '_OsDisk_1', storageAccountType := 'Premium_LRS'),
                name := name || '_OsDisk_1',
                osType := os_type)
            ) AS storageProfile,
            to_json(map_from_entries(list_filter([
              {{'k': CASE WHEN capital_keys THEN 'Role' ELSE 'role' END, 'v': role}},
              {{'k': 'owner', 'v': owner}},
              {{'k': CASE WHEN capital_keys THEN 'Criticality' ELSE 'criticality' END, 'v': criticality}},
              {{'k': CASE WHEN capital_keys THEN 'Environment' ELSE 'environment' END, 'v': s.environment}},
              {{'k': 'asset-category', 'v': CASE WHEN category_tagged THEN category END}},
              {{'k': 'maintenance-window', 'v': window_tag}},
              {{'k': 'internet-exposed', 'v': internet_exposed::VARCHAR}},
              {{'k': 'pci-scope', 'v': pci_scope::VARCHAR}}
            ], lambda e: e.v IS NOT NULL))) AS tags,
            strftime(make_timestamp({period.start_us} - created_days_ago * {DAY_US} + vm * 1000003),
              '%Y-%m-%dT%H:%M:%S.%f') || '+00:00' AS timeCreated,
            'Microsoft.Compute/virtualMachines' AS type,
            vm_guid AS vmId
          FROM vms JOIN snap AS s USING (vm) WHERE kind = 'azure_vm' AND s.snapshot = {k} ORDER BY vm
        ) TO '{path}' (FORMAT json, ARRAY true)
        """
    )


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


def _write_resource_graph(con: duckdb.DuckDBPyConnection, root: Path, period: Period) -> dict[str, int]:
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
    _copy_all(con, statements)
    return {
        "rg_assessment_files": period.days,
        "rg_assessment_rows": assessed,
        "rg_missing_patch_rows": software,
        "rg_installation_runs": installs,
    }


_LA_HOST = """
    v.computer AS Computer,
    CASE WHEN v.kind = 'azure_vm' THEN 'Azure' ELSE 'Non-Azure' END AS ComputerEnvironment,
    v.agent_guid AS SourceComputerId,
    CASE WHEN v.os_type = 'Linux' THEN swapped(v.vm_guid) ELSE v.vm_guid END AS VMUUID,
    nullif(v.arm_id, '') AS ResourceId,
    nullif(lower(v.arm_id), '') AS _ResourceId,
    nullif(v.subscription, '') AS SubscriptionId,
    nullif(v.resource_group, '') AS ResourceGroup,
    CASE WHEN v.kind = 'azure_vm' THEN 'Microsoft.Compute' END AS ResourceProvider,
    CASE WHEN v.kind = 'azure_vm' THEN v.name END AS Resource,
    CASE WHEN v.kind = 'azure_vm' THEN 'virtualMachines' END AS ResourceType,
    'contoso-la-weu' AS ManagementGroupName
"""


def _write_log_analytics(con: duckdb.DuckDBPyConnection, root: Path, period: Period) -> dict[str, int]:
    folder = root / "log_analytics"
    folder.mkdir(parents=True, exist_ok=True)
    os_name = """CASE v.product_id WHEN '10816' THEN 'Windows Server 2016 Datacenter'
        WHEN '11571' THEN 'Windows Server 2019 Datacenter' WHEN '11923' THEN 'Windows Server 2022 Datacenter: Azure Edition'
        WHEN '12436' THEN 'Windows Server 2025 Datacenter: Azure Edition' ELSE 'Ubuntu' END"""
    os_version = """CASE v.product_id WHEN '10816' THEN '10.0.14393' WHEN '11571' THEN '10.0.17763'
        WHEN '11923' THEN '10.0.20348' WHEN '12436' THEN '10.0.26100' ELSE '22.04' END"""
    # The first header carries a UTF-8 byte-order mark, as some portal exports do.
    _copy_all(con, [
        f"""
            COPY (
              SELECT portal_ts(s.t) AS "\ufeffTimeGenerated [UTC]", {_LA_HOST},
                v.os_type AS OSType, {os_name} AS OSName, {os_version} AS OSVersion,
                {os_name} || ' ' || {os_version} AS OSFullName,
                CASE WHEN p.p_os = 'Windows' THEN p.guid END AS UpdateID,
                CASE WHEN p.p_os = 'Windows' THEN '200' END AS RevisionNumber,
                CASE WHEN p.p_os = 'Windows' THEN p.title ELSE p.package || ' ' || p.version END AS Title,
                p.kb AS KBID, p.la_classification AS Classification, p.severity AS MSRCSeverity,
                p.cves AS CVENumbers,
                portal_ts(p.release_us) AS "PublishedDate [UTC]",
                CASE WHEN s.needed THEN 'Needed' ELSE 'Installed' END AS UpdateState,
                'true' AS Approved, 'Microsoft Update' AS ApprovalSource, 'false' AS Optional,
                p.reboot AS RebootBehavior,
                CASE WHEN p.p_os = 'Linux' THEN p.package END AS Product,
                CASE WHEN p.p_os = 'Linux' THEN p.version END AS ProductVersion,
                CASE WHEN p.p_os = 'Linux' THEN 'x86_64' END AS ProductArch,
                CASE WHEN p.p_os = 'Linux' THEN 'jammy-security' END AS PackageRepository,
                CASE WHEN v.os_type = 'Windows' THEN 'OpsManager' ELSE 'Linux' END AS SourceSystem,
                'Update' AS Type
              FROM la_state s JOIN vms v USING (vm) JOIN patches p USING (patch)
              WHERE s.day = {d}
              ORDER BY v.vm, p.patch_key
            ) TO '{folder / f"Update_{day.isoformat()}.csv"}' (HEADER, DELIMITER ',')
            """
        for d, day in enumerate(period.dates())
    ])
    rows = con.execute("SELECT count(*) FROM la_state").fetchone()[0]
    summary_cols = [
        ("TimeGenerated", "datetime"), ("Computer", "string"), ("ComputerEnvironment", "string"),
        ("SourceComputerId", "string"), ("VMUUID", "string"), ("ResourceId", "string"),
        ("_ResourceId", "string"), ("SubscriptionId", "string"), ("ResourceGroup", "string"),
        ("ManagementGroupName", "string"), ("OsVersion", "string"),
        ("CriticalUpdatesMissing", "int"), ("SecurityUpdatesMissing", "int"),
        ("OtherUpdatesMissing", "int"), ("TotalUpdatesMissing", "int"),
        ("OldestMissingSecurityUpdateInDays", "int"), ("OldestMissingSecurityUpdateBucket", "string"),
        ("RestartPending", "bool"), ("WindowsUpdateSetting", "string"), ("WSUSServer", "string"),
        ("SourceSystem", "string"), ("Type", "string"),
    ]
    cols_sql = ", ".join(f"{{'name': '{n}', 'type': '{t}'}}" for n, t in summary_cols)
    con.execute(
        f"""
        COPY (
          SELECT [struct_pack(name := 'PrimaryResult', columns := [{cols_sql}],
                  rows := list(r ORDER BY k1, k2))] AS tables
          FROM (
            SELECT a.vm AS k1, a.day AS k2, [
              strftime(make_timestamp(a.t), '%Y-%m-%dT%H:%M:%S.%gZ'),
              h.Computer, h.ComputerEnvironment, h.SourceComputerId, h.VMUUID, h.ResourceId,
              h._ResourceId, h.SubscriptionId, h.ResourceGroup, h.ManagementGroupName,
              {os_version},
              '0', coalesce(c.security, 0)::VARCHAR,
              (coalesce(c.updates, 0) + coalesce(c.other, 0))::VARCHAR,
              (coalesce(c.security, 0) + coalesce(c.updates, 0) + coalesce(c.other, 0))::VARCHAR,
              coalesce(o.oldest, 0)::VARCHAR,
              CASE WHEN o.oldest IS NULL OR o.oldest < 30 THEN 'Recent'
                   WHEN o.oldest < 180 THEN (o.oldest // 30 * 30) || ' days ago' ELSE 'Older' END,
              a.reboot::VARCHAR,
              CASE WHEN v.os_type = 'Windows' THEN CASE WHEN a.t >= v.wu_manual_from_us THEN 'Manual'
                   ELSE 'Scheduled installation' END END,
              CASE WHEN v.os_type = 'Linux' THEN NULL
                   WHEN v.kind = 'non_azure' THEN 'http://wsus-onprem-01.corp.contoso.com:8530'
                   ELSE 'http://wsus-' || v.location || '-01.contoso.internal:8530' END,
              CASE WHEN v.os_type = 'Windows' THEN 'OpsManager' ELSE 'Linux' END,
              'UpdateSummary'
            ] AS r
            FROM assess a JOIN vms v USING (vm)
            CROSS JOIN LATERAL (SELECT {_LA_HOST}) h
            LEFT JOIN counts c USING (vm, day)
            LEFT JOIN (
              SELECT m.vm, m.day, max((m.t - p.release_us) // {DAY_US}) AS oldest
              FROM missing m JOIN patches p USING (patch) WHERE p.classification = 'Security'
              GROUP BY ALL
            ) o USING (vm, day)
            WHERE v.source IN ('la', 'both')
          )
        ) TO '{folder / "UpdateSummary.json"}' (FORMAT json)
        """
    )
    con.execute(
        f"""
        COPY (
          SELECT strftime(make_timestamp(r.t + 600000000), '%Y-%m-%dT%H:%M:%S.%gZ') AS TimeGenerated,
            strftime(make_timestamp(r.t), '%Y-%m-%dT%H:%M:%S.%gZ') AS StartTime,
            strftime(make_timestamp(r.t + 3600000000), '%Y-%m-%dT%H:%M:%S.%gZ') AS EndTime,
            'Monthly-' || r."window" AS UpdateRunName,
            r.act AS CorrelationId, {_LA_HOST.replace('v.', 'r.')},
            r.os_type AS OSType, p.kb AS KBID,
            CASE WHEN p.p_os = 'Windows' THEN p.title ELSE p.package || ' ' || p.version END AS Title,
            CASE WHEN p.p_os = 'Linux' THEN p.package END AS Product,
            CASE WHEN p.p_os = 'Windows' THEN p.guid END AS UpdateId,
            CASE c.state WHEN 'NotSelected' THEN 'NotIncluded' ELSE c.state END AS InstallationStatus,
            CASE WHEN c.state = 'Failed' THEN '0x80240022' END AS ErrorResult,
            (r.slot % 2 = 1 AND c.state = 'Installed')::VARCHAR AS SucceededOnRetry,
            CASE WHEN r.os_type = 'Windows' THEN 'OpsManager' ELSE 'Linux' END AS SourceSystem,
            'UpdateRunProgress' AS Type,
            'PrimaryResult' AS TableName
          FROM run_rows r JOIN children c USING (vm, slot) JOIN patches p USING (patch)
          WHERE r.source IN ('la', 'both')
          ORDER BY r.t, r.vm, p.patch_key
        ) TO '{folder / "UpdateRunProgress.json"}' (FORMAT json, ARRAY true)
        """
    )
    run_rows = con.execute(
        "SELECT count(*) FROM run_rows r JOIN children c USING (vm, slot) WHERE r.source IN ('la', 'both')"
    ).fetchone()[0]
    summaries = con.execute(
        "SELECT count(*) FROM assess JOIN vms USING (vm) WHERE source IN ('la', 'both')"
    ).fetchone()[0]
    return {"la_update_rows": rows, "la_summary_rows": summaries, "la_run_progress_rows": run_rows}


def write_operations(root: Path, operations: list[dict]) -> int:
    """azure/patch_operations/*.json: one small document per API call (json is fine here)."""
    folder = root / "azure" / "patch_operations"
    folder.mkdir(parents=True, exist_ok=True)
    for op in operations:
        name = op.pop("_file")
        (folder / name).write_text(json.dumps(op, indent=2), encoding="utf-8")
    return len(operations)


def success_error(os_type: str) -> dict:
    """Real responses carry a non-null error object even on success."""
    if os_type == "Windows":
        return {"details": [], "code": "Success", "message": "0 error/s reported"}
    return {"details": [], "code": "0", "message": "0 error/s reported."}

