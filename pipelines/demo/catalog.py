"""The demo patch catalog: Microsoft monthly updates with their CVEs, and Ubuntu package updates.

KB, CVE and build numbers depend only on the month, so two estates with different seeds or
periods name the same month's updates alike; severities, CVSS and exploitation are seeded.
Patches of one chain (one product's cumulative updates, one Ubuntu package) supersede each
other in release order, which is what the MSRC `Supercedence` field and the simulation use.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import numpy as np

from .catalog_msrc import windows_cves, windows_patches
from .catalog_types import Cve, Patch
from .period import DAY_US, Month, Period, day_us, guids

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

# Patches outside the monthly chains that planted cases use.
DEFENDER_PLATFORM_KB = "4052623"  # Defender platform update: a non-security "Updates" patch
NGINX_MANUAL = ("nginx", "1.18.0-6ubuntu14.6")  # installed by hand, never authorized
ZLIB_UNAUTHORIZED = ("zlib1g", "1:1.2.11.dfsg-2ubuntu9.2")  # offered, never proposed

_SEVERITY_RANK = {"Critical": 4, "Important": 3, "Moderate": 2, "Low": 1, None: 0}


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
        fresh = windows_patches(
            month,
            has_net=m_idx == 0 or rng.random() < 0.75,
            has_sql=month.month % 3 == 1 or m_idx == 0,
            has_ssu=month.month % 2 == 0 or m_idx == 0,
        )
        for p in fresh:
            month_patches[p.chain] = len(patches)
            patches.append(p)
        month_cves = windows_cves(rng, month, month_patches, month in third_party_months)
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
