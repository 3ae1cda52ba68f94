"""The demo catalog's records: a patch (Windows update or Ubuntu package version) and a CVE."""

from __future__ import annotations

from dataclasses import dataclass, field

from .period import Month

UBUNTU_RELEASE = "22.04"


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

