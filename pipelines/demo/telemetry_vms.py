"""The dated `az vm list --show-details` inventory snapshots of the demo (azure/virtual_machines/).

`--show-details` reads every VM with its instance view, so each entry carries what the guest agent
reports: osName and osVersion, on Windows the build of the newest cumulative update the machine
runs at capture time (instance_view_os).
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from .catalog import Catalog
from .catalog_msrc import WINDOWS_PRODUCTS, build_before
from .catalog_types import UBUNTU_RELEASE
from .fleet import Fleet
from .period import DAY_US, HOUR_US, Period
from .simulate import Simulation

# osName as the Windows guest agent reports it, per MSRC product id.
_WINDOWS_OS_NAME = {
    "10816": "Windows Server 2016 Datacenter",
    "11571": "Windows Server 2019 Datacenter",
    "11923": "Windows Server 2022 Datacenter Azure Edition",
    "12436": "Windows Server 2025 Datacenter Azure Edition",
}


def instance_view_os(snapshots: pd.DataFrame, catalog: Catalog, fleet: Fleet, sim: Simulation) -> pd.DataFrame:
    """The snapshots with the os_name and os_version of each VM's instance view at capture time.

    A Windows build is the fixed build of the newest cumulative update installed (after any
    rollback); an update waiting for its reboot is not running yet, so a machine with a reboot
    pending shows the build from before that run. A machine that stopped reporting shows the
    build it last ran.
    """
    vm = snapshots["vm"].to_numpy()
    t = np.minimum(snapshots["captured_us"].to_numpy(), sim.report_until[vm])
    # reboot_from is an hour after the run that left the reboot pending (simulate.py).
    t = np.where(t >= sim.reboot_from[vm], sim.reboot_from[vm] - HOUR_US - 1, t)
    pid = fleet.col("product_id")[vm]
    os_name = np.full(len(vm), "ubuntu", dtype=object)
    os_version = np.full(len(vm), UBUNTU_RELEASE, dtype=object)
    pair_of = {(int(v), int(c)): i for i, (v, c) in enumerate(zip(sim.pair_vm, sim.pair_chain, strict=True))}
    for product in WINDOWS_PRODUCTS:
        rows = np.flatnonzero(pid == product)
        if not len(rows):
            continue
        chain = catalog.chains.index(f"lcu:{product}")
        pairs = np.array([pair_of[(int(v), chain)] for v in vm[rows]], dtype=np.int64)
        level = sim.levels_at(pairs, t[rows])
        patch = sim.chain_mat[chain, np.maximum(level, 0)]
        builds = np.array([catalog.patches[i].fixed_build for i in patch], dtype=object)
        os_name[rows] = _WINDOWS_OS_NAME[product]
        os_version[rows] = np.where(level >= 0, builds, build_before(product, catalog.months[0]))
    return snapshots.assign(os_name=os_name, os_version=os_version)


def os_build_case(snapshots: pd.DataFrame, fleet: Fleet) -> list[dict]:
    """The OS build of one Windows machine across the snapshots (instance_view_os): each build a
    new os_version interval in marts.vm_config_history."""
    vm = fleet.slots["rg_only_1"]
    rows = snapshots[snapshots["vm"] == vm].sort_values("snapshot")
    builds = [(pd.Timestamp(int(us), unit="us", tz="UTC").isoformat(), str(v))
              for us, v in zip(rows["captured_us"], rows["os_version"], strict=True)]
    starts = [(at, v) for k, (at, v) in enumerate(builds) if k == 0 or builds[k - 1][1] != v]
    return [{"case": "os_build_change", "vm_id": str(fleet.col("vm_key")[vm]), "patch_key": None,
             "expected_state": None, "expected_gap_type": None,
             "note": "instanceView.osVersion follows the cumulative updates it runs: one os_version interval per build",
             "snapshots": [{"captured_at": at, "os_version": v} for at, v in builds],
             "expected_intervals": [{"valid_from": at, "value": v} for at, v in starts]}]


def write_vms(con: duckdb.DuckDBPyConnection, root: Path, period: Period, snapshots) -> dict[str, int]:
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
            struct_pack(
              computerName := computer, osName := s.os_name, osVersion := s.os_version,
              statuses := [
                struct_pack(code := 'ProvisioningState/succeeded', level := 'Info',
                  displayStatus := 'Provisioning succeeded'),
                CASE WHEN deallocated
                  THEN struct_pack(code := 'PowerState/deallocated', level := 'Info', displayStatus := 'VM deallocated')
                  ELSE struct_pack(code := 'PowerState/running', level := 'Info', displayStatus := 'VM running') END]
            ) AS instanceView,
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

