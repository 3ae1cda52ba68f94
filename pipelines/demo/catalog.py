"""The demo patch catalog: Microsoft monthly updates with their CVEs, and Ubuntu package updates.

KB, CVE and build numbers depend only on the month, so two estates with different seeds or
periods name the same month's updates alike; severities, CVSS and exploitation are seeded.
Patches of one chain (one product's cumulative updates, one Ubuntu package) supersede each
other in release order, which is what the MSRC `Supercedence` field and the simulation use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np

from .period import DAY_US, Month, Period, day_us, guids

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

# Ubuntu 22.04 packages: name, version with {n} for the rising revision, first n, RG class,
# reboot behaviour. A package gets a new version in a month with probability 0.6.
UBUNTU_PACKAGES = [
    ("openssl", "3.0.2-0ubuntu1.{n}", 15, "Security", "NeverReboots"),
    ("openssh-server", "1:8.9p1-3ubuntu0.{n}", 10, "Security", "NeverReboots"),
    ("curl", "7.81.0-1ubuntu1.{n}", 16, "Security", "NeverReboots"),
    ("linux-image-azure", "6.8.0.10{n}.{n}", 20, "Security", "AlwaysRequiresReboot"),
    ("sudo", "1.9.9-1ubuntu2.{n}", 4, "Security", "NeverReboots"),
    ("libc6", "2.35-0ubuntu3.{n}", 8, "Security", "NeverReboots"),
    ("systemd", "249.11-0ubuntu3.{n}", 12, "Other", "CanRequestReboot"),
]
UBUNTU_RELEASE = "22.04"

# Patches outside the monthly chains that planted cases use.
DEFENDER_PLATFORM_KB = "4052623"  # Defender platform update: a non-security "Updates" patch
NGINX_MANUAL = ("nginx", "1.18.0-6ubuntu14.6")  # installed by hand, never authorized
ZLIB_UNAUTHORIZED = ("zlib1g", "1:1.2.11.dfsg-2ubuntu9.2")  # offered, never proposed

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
_SEVERITY_RANK = {"Critical": 4, "Important": 3, "Moderate": 2, "Low": 1, None: 0}
# Base score range per severity and a matching CVSS 3.1 vector.
_CVSS = {
    "Critical": (8.8, 9.8, "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/E:U/RL:O/RC:C"),
    "Important": (7.0, 8.8, "CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H/E:U/RL:O/RC:C"),
    "Moderate": (4.3, 6.5, "CVSS:3.1/AV:N/AC:H/PR:L/UI:R/S:U/C:H/I:N/A:N/E:U/RL:O/RC:C"),
    "Low": (2.5, 4.0, "CVSS:3.1/AV:L/AC:H/PR:H/UI:R/S:U/C:L/I:N/A:N/E:U/RL:O/RC:C"),
}


@dataclass
class Patch:
    key: str  # patch_key: KB digits or <package>_<version>
    kb: str | None
    title: str
    kind: str  # lcu, ssu, net, sql, ubuntu, extra
    chain: str | None  # patches of one chain supersede each other in release order
    os_type: str
    classification: str  # Resource Graph / Compute vocabulary
    release_us: int
    reboot: str  # rebootBehavior
    product_ids: list[str] = field(default_factory=list)
    supersedes: str | None = None
    fixed_build: str = ""
    package: str | None = None
    version: str | None = None
    severity: str | None = None
    cves: list[str] = field(default_factory=list)
    guid: str = ""  # Windows Update id, also the Resource Graph child name on Windows

    @property
    def la_classification(self) -> str:
        if self.os_type == "Linux":
            return "Security Updates" if self.classification == "Security" else "Other Updates"
        return {"Security": "Security Updates", "Updates": "Updates"}[self.classification]

    @property
    def patch_id(self) -> str:
        """Compute API patchId: the update GUID on Windows, name_version_Ubuntu_22.04 on Linux."""
        if self.os_type == "Linux":
            return f"{self.package}_{self.version}_Ubuntu_{UBUNTU_RELEASE}"
        return self.guid


@dataclass
class Cve:
    cve: str
    month: Month
    title: str
    impact: str | None
    severity: str | None
    base: float | None
    temporal: float | None
    vector: str | None
    exploited: bool
    disclosed: bool
    cna: str
    tag: str
    # product id -> index of the fixing patch in Catalog.patches
    fixes: dict[str, int] = field(default_factory=dict)
    # third-party CVEs are fixed by a product release, not a KB
    fixed_release: str | None = None


@dataclass
class Catalog:
    months: list[Month]
    patches: list[Patch]
    cves: list[Cve]
    chains: list[str]
    kev_cve: str  # the exploited CVE whose KEV due date falls inside the period

    def index(self, key: str) -> int:
        return next(i for i, p in enumerate(self.patches) if p.key == key)

    def chain_matrix(self) -> tuple[np.ndarray, np.ndarray]:
        """(chain x position) patch indices, -1 padded, in release order, plus release times."""
        members: dict[str, list[int]] = {c: [] for c in self.chains}
        for i, p in enumerate(self.patches):
            if p.chain is not None:
                members[p.chain].append(i)
        width = max(len(m) for m in members.values())
        mat = np.full((len(self.chains), width), -1, dtype=np.int64)
        rel = np.full(mat.shape, np.iinfo(np.int64).max, dtype=np.int64)
        for c, chain in enumerate(self.chains):
            ordered = sorted(members[chain], key=lambda i: self.patches[i].release_us)
            mat[c, : len(ordered)] = ordered
            rel[c, : len(ordered)] = [self.patches[i].release_us for i in ordered]
        return mat, rel


def _kb(month: Month, offset: int) -> str:
    return str(_KB_BASE + _KB_PER_MONTH * month.serial + offset)


def _build(pid: str, month: Month) -> str:
    prefix, first = WINDOWS_PRODUCTS[pid][1], WINDOWS_PRODUCTS[pid][2]
    return f"{prefix}.{max(first + 61 * month.serial, 1)}"


def _windows_patches(month: Month, has_net: bool, has_sql: bool, has_ssu: bool) -> list[Patch]:
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


def _month_cves(
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


def _ubuntu_patches(rng: np.random.Generator, months: list[Month]) -> list[Patch]:
    out = []
    for package, template, first, classification, reboot in UBUNTU_PACKAGES:
        n = first
        for month in months:
            if rng.random() > 0.6:
                continue
            # Ubuntu publishes any day of the month, unlike Patch Tuesday.
            day = month.tuesday.replace(day=1) + timedelta(days=int(rng.integers(0, 27)))
            version = template.format(n=n)
            n += 1
            out.append(
                Patch(
                    key=f"{package}_{version}",
                    kb=None,
                    title=package,
                    kind="ubuntu",
                    chain=f"deb:{package}",
                    os_type="Linux",
                    classification=classification,
                    release_us=day_us(day, int(rng.integers(0, 24))),
                    reboot=reboot,
                    package=package,
                    version=version,
                    severity="Important" if classification == "Security" else None,
                )
            )
    return out


def _out_of_band(month: Month) -> list[Patch]:
    """Patches outside the chains: they only appear in the planted runs and operations."""
    release = day_us(month.tuesday, 17)
    linux = [
        Patch(
            key=f"{name}_{ver}",
            kb=None,
            title=name,
            kind="extra",
            chain=None,
            os_type="Linux",
            classification="Security",
            release_us=release,
            reboot="NeverReboots",
            package=name,
            version=ver,
            severity="Important",
        )
        for name, ver in (NGINX_MANUAL, ZLIB_UNAUTHORIZED)
    ]
    return [
        Patch(
            key=DEFENDER_PLATFORM_KB,
            kb=DEFENDER_PLATFORM_KB,
            title=(
                "Update for Microsoft Defender Antivirus antimalware platform - "
                f"KB{DEFENDER_PLATFORM_KB} (Version 4.18.25100.9)"
            ),
            kind="extra",
            chain=None,
            os_type="Windows",
            classification="Updates",
            release_us=release,
            reboot="NeverReboots",
        ),
        *linux,
    ]


def build_catalog(period: Period, rng: np.random.Generator) -> Catalog:
    months = period.months()
    patches: list[Patch] = []
    cves: list[Cve] = []
    kev_month = _kev_month(period, months)
    third_party_months = {months[1], months[-2]}
    for m_idx, month in enumerate(months):
        month_patches: dict[str, int] = {}
        fresh = _windows_patches(
            month,
            has_net=m_idx == 0 or rng.random() < 0.75,
            has_sql=month.month % 3 == 1 or m_idx == 0,
            has_ssu=month.month % 2 == 0 or m_idx == 0,
        )
        for p in fresh:
            month_patches[p.chain] = len(patches)
            patches.append(p)
        month_cves = _month_cves(rng, month, month_patches, month in third_party_months)
        if month == kev_month:
            # The planted KEV case: exploited in the wild, listed by CISA with a due date
            # that passes inside the period.
            month_cves[0].exploited = True
            month_cves[0].severity = "Important"
            month_cves[0].impact = "Elevation of Privilege"
            month_cves[0].title = "Windows Common Log File System Driver Elevation of Privilege Vulnerability"
        cves.extend(month_cves)
    kev_cve = next(c.cve for c in cves if c.month == kev_month and c.exploited)
    patches.extend(_ubuntu_patches(rng, months))
    patches.extend(_out_of_band(months[-1]))
    # A separate stream, so the GUIDs do not shift the catalog's other draws.
    for p, g in zip(patches, guids(np.random.default_rng(1_000_003), len(patches)), strict=True):
        p.guid = str(g)
    _link(patches, cves)
    chains = sorted({p.chain for p in patches if p.chain})
    return Catalog(months=months, patches=patches, cves=cves, chains=chains, kev_cve=kev_cve)


def _kev_month(period: Period, months: list[Month]) -> Month:
    """Latest month whose CISA due date (release + 21 days) is at least 3 days before the end."""
    end = period.end_us
    return max(m for m in months if day_us(m.tuesday) + 24 * DAY_US < end)


def _link(patches: list[Patch], cves: list[Cve]) -> None:
    """Supersedence along each chain, CVE lists and max severity per patch."""
    previous: dict[str, Patch] = {}
    for p in sorted(patches, key=lambda p: p.release_us):
        if p.chain and p.chain in previous and p.kb:
            p.supersedes = previous[p.chain].kb
        if p.chain:
            previous[p.chain] = p
    for c in cves:
        for idx in sorted(set(c.fixes.values())):
            patch = patches[idx]
            patch.cves.append(c.cve)
            if _SEVERITY_RANK[c.severity] > _SEVERITY_RANK[patch.severity]:
                patch.severity = c.severity
