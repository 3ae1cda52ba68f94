"""The Microsoft side of the demo catalog: monthly Windows Server, .NET, SSU and SQL updates and
the month's CVEs (catalog.py assembles them with the Ubuntu packages).

KB, CVE and build numbers depend only on the month; severities, CVSS and exploitation are seeded.
"""

from __future__ import annotations

import numpy as np

from .catalog_types import Cve, Patch
from .period import Month, day_us

# Windows Server products: MSRC ProductID, name, build prefix, first revision in January 2026,
# image SKU, the servicing version words MSRC puts in update titles.
WINDOWS_PRODUCTS = {
    "10816": ("Windows Server 2016", "10.0.14393", 8780, "2016-Datacenter", "Windows Server 2016"),
    "11571": ("Windows Server 2019", "10.0.17763", 7434, "2019-Datacenter", "Windows Server 2019"),
    "11923": (
        "Windows Server 2022",
        "10.0.20348",
        4648,
        "2022-datacenter-azure-edition",
        "Microsoft server operating system version 21H2",
    ),
    "12436": (
        "Windows Server 2025",
        "10.0.26100",
        6060,
        "2025-datacenter-azure-edition",
        "Microsoft server operating system version 24H2",
    ),
}
SQL_PRODUCT = ("12147", "Microsoft SQL Server 2022 for x64-based Systems (GDR)")
EDGE_PRODUCT = ("11655", "Microsoft Edge (Chromium-based)")
DOTNET_PREFIX = "11650"  # "Microsoft .NET Framework 4.8 on <product>" ids are "11650-<pid>"
# KB offsets within a month's block of numbers.
_KB_BASE = 5_066_000
_KB_PER_MONTH = 80
_LCU_OFFSET = {"10816": 1, "11571": 7, "11923": 12, "12436": 20}
_NET_OFFSET = {"10816": 30, "11571": 33, "11923": 36, "12436": 39}
_SSU_OFFSET = 3
_SQL_OFFSET = 50

IMPACTS = [
    "Remote Code Execution",
    "Elevation of Privilege",
    "Security Feature Bypass",
    "Denial of Service",
    "Information Disclosure",
    "Spoofing",
]
COMPONENTS = [
    "Windows Kerberos",
    "Windows SMB Server",
    "Windows TCP/IP",
    "Windows Hyper-V",
    "Windows Kernel",
    "Windows Common Log File System Driver",
    "Windows NTLM",
    "Windows Remote Desktop Services",
    "Windows DNS Server",
    "Windows Win32K",
    "Windows LDAP",
    "Windows Cryptographic Services",
    "Windows Print Spooler",
    "Windows Installer",
]
SEVERITIES = ["Critical", "Important", "Moderate", "Low"]
_SEVERITY_P = [0.15, 0.68, 0.12, 0.05]
# Base score range per severity and a matching CVSS 3.1 vector.
_CVSS = {
    "Critical": (8.8, 9.8, "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/E:U/RL:O/RC:C"),
    "Important": (7.0, 8.8, "CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H/E:U/RL:O/RC:C"),
    "Moderate": (4.3, 6.5, "CVSS:3.1/AV:N/AC:H/PR:L/UI:R/S:U/C:H/I:N/A:N/E:U/RL:O/RC:C"),
    "Low": (2.5, 4.0, "CVSS:3.1/AV:L/AC:H/PR:H/UI:R/S:U/C:L/I:N/A:N/E:U/RL:O/RC:C"),
}



def _kb(month: Month, offset: int) -> str:
    return str(_KB_BASE + _KB_PER_MONTH * month.serial + offset)


def _build(pid: str, month: Month) -> str:
    prefix, first = WINDOWS_PRODUCTS[pid][1], WINDOWS_PRODUCTS[pid][2]
    return f"{prefix}.{max(first + 61 * month.serial, 1)}"


def build_before(pid: str, month: Month) -> str:
    """The build a machine runs when no cumulative update of the catalog is installed: the one of
    the month before the catalog's first."""
    serial = month.year * 12 + month.month - 2
    return _build(pid, Month(serial // 12, serial % 12 + 1))


def windows_patches(month: Month, has_net: bool, has_sql: bool, has_ssu: bool) -> list[Patch]:
    release = day_us(month.tuesday, 17)
    out = []
    for pid, (_name, _prefix, _rev, _sku, words) in WINDOWS_PRODUCTS.items():
        kb = _kb(month, _LCU_OFFSET[pid])
        out.append(
            Patch(
                key=kb,
                kb=kb,
                title=f"{month.prefix} Cumulative Update for {words} for x64-based Systems (KB{kb})",
                kind="lcu",
                chain=f"lcu:{pid}",
                os_type="Windows",
                classification="Security",
                release_us=release,
                reboot="CanRequestReboot",
                product_ids=[pid],
                fixed_build=_build(pid, month),
            )
        )
        if has_net:
            kb = _kb(month, _NET_OFFSET[pid])
            out.append(
                Patch(
                    key=kb,
                    kb=kb,
                    title=(
                        f"{month.prefix} Cumulative Update for .NET Framework 3.5, 4.8 and 4.8.1 "
                        f"for {words} for x64 (KB{kb})"
                    ),
                    kind="net",
                    chain=f"net:{pid}",
                    os_type="Windows",
                    classification="Security",
                    release_us=release,
                    reboot="CanRequestReboot",
                    product_ids=[f"{DOTNET_PREFIX}-{pid}"],
                    fixed_build=f"4.8.{4800 + 10 * month.serial}",
                )
            )
    if has_ssu:
        kb = _kb(month, _SSU_OFFSET)
        out.append(
            Patch(
                key=kb,
                kb=kb,
                title=(
                    f"{month.prefix} Servicing Stack Update for Windows Server 2016 "
                    f"for x64-based Systems (KB{kb})"
                ),
                kind="ssu",
                chain="ssu:10816",
                os_type="Windows",
                classification="Security",
                release_us=release,
                reboot="NeverReboots",
                product_ids=["10816"],
                fixed_build=_build("10816", month),
            )
        )
    if has_sql:
        kb = _kb(month, _SQL_OFFSET)
        out.append(
            Patch(
                key=kb,
                kb=kb,
                title=f"Security Update for SQL Server 2022 RTM GDR (KB{kb})",
                kind="sql",
                chain="sql:2022",
                os_type="Windows",
                classification="Security",
                release_us=release,
                reboot="CanRequestReboot",
                product_ids=[SQL_PRODUCT[0]],
                fixed_build=f"16.0.{1130 + month.serial}.0",
            )
        )
    return out


def _cvss(rng: np.random.Generator, severity: str) -> tuple[float, float, str]:
    low, high, vector = _CVSS[severity]
    base = round(float(rng.uniform(low, high)), 1)
    return base, round(base * 0.87, 1), vector


def windows_cves(
    rng: np.random.Generator, month: Month, month_patches: dict[str, int], third_party: bool
) -> list[Cve]:
    """The month's CVEs; month_patches maps 'lcu:<pid>' etc. to patch indices."""
    out: list[Cve] = []
    number = 20000 + (month.month - 1) * 400
    os_pids = list(WINDOWS_PRODUCTS)
    for i in range(int(rng.integers(10, 17))):
        severity = str(rng.choice(SEVERITIES, p=_SEVERITY_P))
        base, temporal, vector = _cvss(rng, severity)
        component = COMPONENTS[int(rng.integers(len(COMPONENTS)))]
        impact = IMPACTS[int(rng.integers(len(IMPACTS)))]
        pids = os_pids if i == 0 or rng.random() > 0.2 else os_pids[1:]
        out.append(
            Cve(
                cve=f"CVE-{month.year}-{number + i}",
                month=month,
                title=f"{component} {impact} Vulnerability",
                impact=impact,
                severity=severity,
                base=base,
                temporal=temporal,
                vector=vector,
                exploited=bool(rng.random() < 0.03),
                disclosed=bool(rng.random() < 0.05),
                cna="Microsoft",
                tag=component,
                fixes={pid: month_patches[f"lcu:{pid}"] for pid in pids},
            )
        )
    number += 100
    extra = [(k, v) for k, v in month_patches.items() if k.startswith(("net:", "sql:"))]
    for j, group in enumerate(sorted({k.split(":")[0] for k, _ in extra})):
        severity = "Important"
        base, temporal, vector = _cvss(rng, severity)
        is_net = group == "net"
        fixes = {}
        for chain, idx in extra:
            if chain.startswith(group):
                pid = chain.split(":")[1]
                fixes[f"{DOTNET_PREFIX}-{pid}" if is_net else SQL_PRODUCT[0]] = idx
        out.append(
            Cve(
                cve=f"CVE-{month.year}-{number + j}",
                month=month,
                title=(
                    ".NET Framework Remote Code Execution Vulnerability"
                    if is_net
                    else "SQL Server Native Client Remote Code Execution Vulnerability"
                ),
                impact="Remote Code Execution",
                severity=severity,
                base=base,
                temporal=temporal,
                vector=vector,
                exploited=False,
                disclosed=False,
                cna="Microsoft",
                tag=".NET Framework" if is_net else "SQL Server",
                fixes=fixes,
            )
        )
    if "ssu:10816" in month_patches:
        out.append(
            Cve(
                cve="ADV990001",
                month=month,
                title="Latest Servicing Stack Updates",
                impact=None,
                severity=None,
                base=None,
                temporal=None,
                vector=None,
                exploited=False,
                disclosed=False,
                cna="Microsoft",
                tag="Servicing Stack Updates",
                fixes={"10816": month_patches["ssu:10816"]},
            )
        )
    if third_party:
        # Chromium CVEs: no title, no severity, no CVSS, fixed by an Edge release.
        out.append(
            Cve(
                cve=f"CVE-{month.year}-{9000 + month.month * 10}",
                month=month,
                title="",
                impact=None,
                severity=None,
                base=None,
                temporal=None,
                vector=None,
                exploited=False,
                disclosed=False,
                cna="Chrome",
                tag="Microsoft Edge (Chromium-based)",
                fixed_release=f"{130 + month.serial}.0.{2900 + month.serial * 30}.61",
            )
        )
    return out

