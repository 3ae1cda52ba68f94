"""OSV advisories for the demo's Ubuntu packages and CISA Vulnrichment records for every CVE.

Ubuntu security notices (USN-like OSV records, ecosystem Ubuntu:22.04:LTS) name the source
package and list the binary packages built from it (`ecosystem_specific.binaries`), fixed at the
demo patch's version, so each Linux patch key maps to its advisory's CVEs. Every Ubuntu package
update of the demo has one, systemd's too (its updates come from the -updates pocket, classified
Other, but the notice lists the low-priority CVEs they also fix).

Vulnrichment: one CVE JSON 5 record per CVE released by the end of the period, at its upstream
path, with the CISA ADP container's SSVC decision points; about one CVE in seven outside KEV has
no record (CISA has not enriched it), so BOD 26-04 falls back to the policy defaults for it.

Draws come from a generator of their own (seeded from the estate's seed), so adding these files
does not shift any other part of the estate.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np

from pipelines.sources.vulnrichment import ADP_TITLE, record_path

from .catalog import Catalog
from .catalog_types import UBUNTU_RELEASE, Patch
from .period import Period, us_to_datetime

ECOSYSTEM = f"Ubuntu:{UBUNTU_RELEASE}:LTS"
# Binary package (what Azure names the patch after) -> Ubuntu source package.
SOURCE_PACKAGES = {
    "openssl": "openssl",
    "openssh-server": "openssh",
    "curl": "curl",
    "linux-image-azure": "linux-azure",
    "sudo": "sudo",
    "libc6": "glibc",
    "systemd": "systemd",
    "nginx": "nginx",
}
# Ubuntu priority -> a CVSS 3.1 vector of that band (the advisory carries both).
_PRIORITIES = {
    "critical": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
    "high": "CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:N",
    "medium": "CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:N/A:N",
    "low": "CVSS:3.1/AV:L/AC:H/PR:H/UI:R/S:U/C:L/I:N/A:N",
}
_ADP_ORG = "134c704f-9b21-4f2e-91b3-4a467353bcc0"


@dataclass
class LinuxCve:
    cve: str
    patch_key: str
    package: str
    published: date
    priority: str


def linux_cves(catalog: Catalog, rng: np.random.Generator) -> list[LinuxCve]:
    """One or two CVEs for each Ubuntu package update (ids CVE-<year>-5xxxx, in release order)."""
    out: list[LinuxCve] = []
    patches = sorted((p for p in catalog.patches if p.os_type == "Linux"), key=lambda p: (p.release_us, p.key))
    for n, patch in enumerate(patches):
        released = us_to_datetime(patch.release_us).date()
        security = patch.classification == "Security"
        for k in range(1 + int(rng.random() < 0.4)):
            weights = [0.08, 0.32, 0.45, 0.15] if security else [0.0, 0.0, 0.3, 0.7]
            priority = str(rng.choice(list(_PRIORITIES), p=weights))
            out.append(
                LinuxCve(f"CVE-{released.year}-{50000 + 10 * n + k}", patch.key, patch.package or "", released, priority)
            )
    return out


def _advisory(number: int, patch: Patch, cves: list[LinuxCve]) -> dict:
    worst = min(cves, key=lambda c: list(_PRIORITIES).index(c.priority))
    published = f"{cves[0].published.isoformat()}T12:00:00Z"
    source = SOURCE_PACKAGES.get(patch.package or "", patch.package)
    return {
        "schema_version": "1.6.3",
        "id": f"USN-{number}-1",
        "summary": f"{source} vulnerabilities",
        "details": f"Several security issues were fixed in {source}.",
        "aliases": [],
        "related": [],
        "upstream": [c.cve for c in cves],
        "published": published,
        "modified": published,
        "severity": [{"type": "Ubuntu", "score": worst.priority}, {"type": "CVSS_V3", "score": _PRIORITIES[worst.priority]}],
        "affected": [
            {
                "package": {
                    "ecosystem": ECOSYSTEM,
                    "name": source,
                    "purl": f"pkg:deb/ubuntu/{source}@{patch.version}?arch=source&distro=jammy",
                },
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": patch.version}]}],
                "versions": [],
                "ecosystem_specific": {
                    "binaries": [{"binary_name": patch.package, "binary_version": patch.version}],
                    "availability": "No subscription required",
                },
            }
        ],
        "references": [{"type": "ADVISORY", "url": f"https://ubuntu.com/security/notices/USN-{number}-1"}],
    }


def write_osv(root: Path, catalog: Catalog, cves: list[LinuxCve]) -> int:
    """One advisory file per Ubuntu package update under bulletins/osv/ubuntu/."""
    folder = root / "bulletins" / "osv" / "ubuntu"
    folder.mkdir(parents=True, exist_ok=True)
    by_patch: dict[str, list[LinuxCve]] = {}
    for c in cves:
        by_patch.setdefault(c.patch_key, []).append(c)
    for n, key in enumerate(sorted(by_patch, key=lambda k: (by_patch[k][0].published, k))):
        advisory = _advisory(7000 + n, catalog.patches[catalog.index(key)], by_patch[key])
        (folder / f"{advisory['id']}.json").write_text(json.dumps(advisory, indent=1), encoding="utf-8")
    return len(by_patch)


def _record(cve: str, published: date, decided: date, options: dict[str, str]) -> dict:
    stamp = f"{decided.isoformat()}T14:00:00.000Z"
    return {
        "dataType": "CVE_RECORD",
        "dataVersion": "5.1",
        "cveMetadata": {
            "cveId": cve,
            "assignerShortName": "demo",
            "state": "PUBLISHED",
            "datePublished": f"{published.isoformat()}T17:00:00.000Z",
            "dateUpdated": stamp,
        },
        "containers": {
            "cna": {"providerMetadata": {"orgId": "00000000-0000-4000-8000-000000000000", "shortName": "demo"}},
            "adp": [
                {
                    "title": ADP_TITLE,
                    "providerMetadata": {"orgId": _ADP_ORG, "shortName": "CISA-ADP", "dateUpdated": stamp},
                    "metrics": [
                        {
                            "other": {
                                "type": "ssvc",
                                "content": {
                                    "timestamp": stamp,
                                    "id": cve,
                                    "options": [{k: v} for k, v in options.items()],
                                    "role": "CISA Coordinator",
                                    "version": "2.0.3",
                                },
                            }
                        }
                    ],
                }
            ],
        },
    }


def write_vulnrichment(
    root: Path, catalog: Catalog, linux: list[LinuxCve], kev: set[str], period: Period, rng: np.random.Generator
) -> int:
    """Vulnrichment records, decided two days after publication (never after the period end)."""
    folder = root / "bulletins" / "vulnrichment"
    published = {c.cve: (c.month.tuesday, c.impact or "") for c in catalog.cves if c.cve.startswith("CVE-")}
    published.update({c.cve: (c.published, "") for c in linux})
    written = 0
    for cve, (day, impact) in sorted(published.items()):
        enriched = rng.random() >= 0.15 or cve in kev  # CISA enriches every KEV entry
        automatable = rng.random() < 0.3
        total = rng.random() < (0.6 if impact in ("Remote Code Execution", "Elevation of Privilege") else 0.3)
        poc = rng.random() < 0.1
        if not enriched or day > period.end:
            continue
        options = {
            "Exploitation": "active" if cve in kev else "poc" if poc else "none",
            "Automatable": "yes" if automatable else "no",
            "Technical Impact": "total" if total else "partial",
        }
        decided = min(day + timedelta(days=2), period.end)
        path = folder / record_path(cve)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(_record(cve, day, decided, options), indent=1), encoding="utf-8")
        written += 1
    return written


def linux_kev(linux: list[LinuxCve], period: Period) -> LinuxCve | None:
    """The planted Linux KEV case: the first high or critical Ubuntu CVE that CISA lists three
    days after its publication, inside the period."""
    return next(
        (
            c
            for c in sorted(linux, key=lambda c: (c.published, c.cve))
            if c.priority in ("critical", "high") and c.published + timedelta(days=3) <= period.end
        ),
        None,
    )
