"""The demo machines: Azure VMs in 3 subscriptions and 4 regions, plus on-premises computers.

Planted machines (the hard cases of docs/demo-estate.md) take fixed specs at seeded positions
among the VMs; every other machine is drawn at random. Columns are numpy arrays end to end.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .period import guids

SUBSCRIPTIONS = ["production", "nonproduction", "shared-services"]
REGIONS = {"westeurope": "WEU", "northeurope": "NEU", "uksouth": "UKS", "eastus": "EUS"}
ENVIRONMENTS = ["production", "staging", "test", "dev"]
_ENV_P = [0.55, 0.15, 0.15, 0.15]
_ENV_SHORT = {"production": "prd", "staging": "stg", "test": "tst", "dev": "dev"}
WINDOWS_ROLES = ["web", "app", "sql", "dc"]
LINUX_ROLES = ["web", "app", "db"]
_WIN_PIDS = ["10816", "11571", "11923", "12436"]
_WIN_PID_P = [0.15, 0.30, 0.40, 0.15]
CATEGORY = {
    ("Windows", "web"): "win-web",
    ("Windows", "app"): "win-app",
    ("Windows", "sql"): "win-sql",
    ("Windows", "dc"): "win-dc",
    ("Linux", "web"): "lnx-web",
    ("Linux", "app"): "lnx-app",
    ("Linux", "db"): "lnx-db",
}
CATEGORIES = sorted(set(CATEGORY.values()))
OWNERS = {
    "web": "web-platform@contoso.com",
    "app": "app-services@contoso.com",
    "sql": "dba-team@contoso.com",
    "db": "dba-team@contoso.com",
    "dc": "identity-team@contoso.com",
}

# Maintenance windows (registers/maintenance_windows.csv). lag_days: the earliest occurrence
# used after Patch Tuesday, so that test runs first, then staging, then production.
WINDOWS = [
    # window_id, name, rrule, start, minutes, tz, ring, environment, capacity, role share, lag
    ("mw-dev-daily", "Dev nightly", "FREQ=DAILY", "01:00", 120, "UTC", 0, "dev", 500, 1.0, 1),
    ("mw-test-we", "Test ring Wednesday", "FREQ=WEEKLY;BYDAY=WE", "20:00", 240, "UTC", 0, "test", 500, 1.0, 1),
    ("mw-staging-fr", "Staging Friday night", "FREQ=WEEKLY;BYDAY=FR", "20:00", 240, "Europe/London", 1, "staging", 300, 0.5, 3),
    ("mw-prod-sa", "Production Saturday night", "FREQ=WEEKLY;BYDAY=SA", "22:00", 240, "Europe/London", 2, "production", 400, 0.5, 7),
    ("mw-prod-su", "Production Sunday early", "FREQ=WEEKLY;BYDAY=SU", "02:00", 240, "Europe/London", 2, "production", 400, 0.5, 7),
    ("mw-crit-su", "Critical production, fourth Sunday", "FREQ=MONTHLY;BYDAY=+4SU", "03:00", 180, "UTC", 3, "production", 100, 0.34, 7),
]

# Change freezes (registers/blackout_dates.csv): id, first day, last day, environment, reason.
BLACKOUTS = [
    ("BO-2026-Q3", "2026-09-28", "2026-10-02", "production", "Quarter-end financial close"),
    ("BO-2026-BF", "2026-11-25", "2026-12-01", "production", "Black Friday and Cyber Monday trading"),
    ("BO-2026-YE", "2026-12-18", "2027-01-04", "*", "Year-end change freeze"),
]

# (slot, os, product id, environment, role, source): the planted machines. Source "rg" reports
# to Azure Update Manager (Resource Graph), "la" to the legacy agent (Log Analytics), "both".
PLANTED = [
    ("pending_reboot_1", "Windows", "11923", "production", "web", "rg"),
    ("pending_reboot_2", "Windows", "11571", "production", "app", "rg"),
    ("failed_retry_1", "Windows", "11923", "production", "app", "rg"),
    ("failed_retry_2", "Windows", "10816", "production", "sql", "la"),
    ("superseded_1", "Windows", "11571", "production", "web", "rg"),
    ("superseded_2", "Windows", "12436", "production", "app", "rg"),
    ("kev_1", "Windows", "11571", "production", "web", "rg"),
    ("kev_2", "Windows", "11923", "production", "app", "rg"),
    ("stale_1", "Windows", "11923", "production", "app", "rg"),
    ("stale_2", "Linux", "", "production", "web", "rg"),
    ("deallocated_1", "Windows", "10816", "dev", "app", "rg"),
    ("deallocated_2", "Linux", "", "test", "app", "rg"),
    ("rollback_1", "Windows", "11923", "production", "sql", "rg"),
    ("rollback_2", "Linux", "", "production", "db", "rg"),
    ("manual_unauthorized_1", "Linux", "", "production", "web", "rg"),
    ("manual_unauthorized_2", "Linux", "", "production", "web", "rg"),
    ("manual_rejected_1", "Windows", "11923", "production", "app", "rg"),
    ("manual_rejected_2", "Windows", "11923", "production", "app", "rg"),
    ("not_selected_1", "Windows", "12436", "production", "web", "rg"),
    ("not_selected_2", "Windows", "11571", "staging", "web", "rg"),
    ("la_only_1", "Windows", "10816", "production", "app", "la"),
    ("la_only_2", "Linux", "", "production", "web", "la"),
    ("both_1", "Windows", "11571", "production", "sql", "both"),
    ("both_2", "Linux", "", "staging", "app", "both"),
    ("rg_only_1", "Windows", "12436", "production", "web", "rg"),
]
# On-premises computers known only to Log Analytics (ComputerEnvironment "Non-Azure").
ON_PREMISES = [
    ("onprem_1", "Windows", "11571", "production", "dc", "onprem-dc01"),
    ("onprem_2", "Windows", "10816", "production", "app", "onprem-app01"),
    ("onprem_3", "Linux", "", "production", "db", "onprem-db01"),
]
ONPREM_DOMAIN = "corp.contoso.com"


@dataclass
class Fleet:
    vms: pd.DataFrame  # one row per machine, Azure VMs first, then on-premises computers
    subscriptions: list[str]
    slots: dict[str, int]  # planted slot -> row

    def __len__(self) -> int:
        return len(self.vms)

    def col(self, name: str) -> np.ndarray:
        return self.vms[name].to_numpy()


def _choice(rng: np.random.Generator, values: list[str], n: int, p=None) -> np.ndarray:
    return np.asarray(values, dtype=object)[rng.choice(len(values), size=n, p=p)]


def build_fleet(n_vms: int, rng: np.random.Generator) -> Fleet:
    if n_vms < len(PLANTED) + 5:
        raise ValueError(f"the demo estate needs at least {len(PLANTED) + 5} VMs, got {n_vms}")
    n = n_vms + len(ON_PREMISES)
    os_type = np.where(rng.random(n) < 0.7, "Windows", "Linux").astype(object)
    pid = np.where(os_type == "Windows", _choice(rng, _WIN_PIDS, n, _WIN_PID_P), "").astype(object)
    env = _choice(rng, ENVIRONMENTS, n, _ENV_P)
    role = np.where(
        os_type == "Windows",
        _choice(rng, WINDOWS_ROLES, n, [0.35, 0.35, 0.2, 0.1]),
        _choice(rng, LINUX_ROLES, n, [0.4, 0.4, 0.2]),
    ).astype(object)
    # 15 % of the VMs still run the legacy Log Analytics agent.
    source = np.where(rng.random(n) < 0.15, "la", "rg").astype(object)
    kind = np.full(n, "azure_vm", dtype=object)

    positions = rng.permutation(n_vms)[: len(PLANTED)]
    slots = {}
    for pos, (slot, o, p, e, r, s) in zip(positions, PLANTED, strict=True):
        os_type[pos], pid[pos], env[pos], role[pos], source[pos] = o, p, e, r, s
        slots[slot] = int(pos)
    for i, (slot, o, p, e, r, _name) in enumerate(ON_PREMISES):
        pos = n_vms + i
        os_type[pos], pid[pos], env[pos], role[pos], source[pos] = o, p, e, r, "la"
        kind[pos] = "non_azure"
        slots[slot] = pos

    prod = env == "production"
    crit = np.where(
        prod,
        _choice(rng, ["critical", "high", "medium", "low"], n, [0.15, 0.35, 0.4, 0.1]),
        _choice(rng, ["medium", "low"], n, [0.4, 0.6]),
    ).astype(object)
    crit[[slots["kev_1"], slots["rollback_1"]]] = "critical"
    category = np.array([CATEGORY[(o, r)] for o, r in zip(os_type, role, strict=True)], dtype=object)
    window = np.select(
        [env == "dev", env == "test", env == "staging", crit == "critical"],
        ["mw-dev-daily", "mw-test-we", "mw-staging-fr", "mw-crit-su"],
        default=np.where(np.arange(n) % 2 == 0, "mw-prod-sa", "mw-prod-su"),
    ).astype(object)
    region = _choice(rng, list(REGIONS), n, [0.4, 0.25, 0.2, 0.15])
    sub_idx = np.where(role == "dc", 2, np.where(prod, 0, 1))
    sub_ids = list(guids(rng, len(SUBSCRIPTIONS)))
    number = np.char.zfill(np.arange(n).astype(str), 5).astype(object)
    env_short = np.vectorize(_ENV_SHORT.get, otypes=[object])(env)
    name = "vm-" + env_short + "-" + role + "-" + number
    region_short = np.vectorize(REGIONS.get, otypes=[object])(region)
    resource_group = ("RG-" + env_short + "-" + role + "-" + region_short).astype(str)
    resource_group = np.char.upper(resource_group).astype(object)
    computer = np.where(os_type == "Windows", np.char.upper((env_short + role + number).astype(str)), name)
    computer = computer.astype(object)
    subscription = np.asarray(sub_ids, dtype=object)[sub_idx]
    arm_id = (
        "/subscriptions/" + subscription + "/resourceGroups/" + resource_group
        + "/providers/Microsoft.Compute/virtualMachines/" + name
    )
    for i, (_slot, _o, _p, _e, _r, host) in enumerate(ON_PREMISES):
        pos = n_vms + i
        name[pos] = host
        computer[pos] = f"{host}.{ONPREM_DOMAIN}"
        arm_id[pos] = ""
        subscription[pos] = ""
        resource_group[pos] = ""
        region[pos] = ""
    vm_key = np.where(kind == "azure_vm", arm_id, "nonazure/" + computer).astype(str)
    vm_key = np.char.lower(vm_key).astype(object)

    internet = (role == "web") & prod & (rng.random(n) < 0.4)
    internet[slots["kev_1"]] = True
    pci = prod & np.isin(role, ["sql", "db", "app"]) & (rng.random(n) < 0.3)
    vms = pd.DataFrame(
        {
            "vm_key": vm_key,
            "arm_id": arm_id,
            "name": name,
            "computer": computer,
            "kind": kind,
            "source": source,
            "os_type": os_type,
            "product_id": pid,
            "environment": env,
            "role": role,
            "criticality": crit,
            "category": category,
            "window": window,
            "location": region,
            "resource_group": resource_group,
            "subscription": subscription,
            "vm_guid": guids(rng, n),
            "agent_guid": guids(rng, n),
            "internet_exposed": internet,
            "pci_scope": pci,
            "owner": np.vectorize(OWNERS.get, otypes=[object])(role),
            # 5 % carry no asset-category tag (matched by the register's rules instead), and
            # 5 % spell tag keys with capitals (keys compare case-insensitively).
            "category_tagged": rng.random(n) >= 0.05,
            "capital_keys": rng.random(n) < 0.05,
            "deallocated": np.isin(np.arange(n), [slots["deallocated_1"], slots["deallocated_2"]]),
            "vm_size": np.where(
                np.isin(role, ["sql", "db"]), "Standard_E8s_v5",
                np.where(role == "dc", "Standard_D2s_v5", "Standard_D4s_v5"),
            ),
            "created_days_ago": rng.integers(120, 1500, n),
        }
    )
    return Fleet(vms=vms, subscriptions=sub_ids, slots=slots)
