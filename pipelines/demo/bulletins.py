"""Vendor bulletins: MSRC CVRF month documents (API JSON form), CISA KEV, FIRST EPSS (OSV and
Vulnrichment: advisories.py).

Shapes follow data-sources.md sections 1-3: CVRF enums are integers in JSON, text-only elements
are {"Value": ...}, `Supercedence` keeps MSRC's spelling.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from datetime import timedelta
from pathlib import Path

import numpy as np

from .advisories import LinuxCve
from .catalog import Catalog
from .catalog_msrc import DOTNET_PREFIX, EDGE_PRODUCT, SQL_PRODUCT, WINDOWS_PRODUCTS
from .catalog_types import Cve
from .period import DAY_US, Month, Period, day_us, us_to_datetime

# CVRF JSON enumerations (data-sources.md 1.4).
THREAT_IMPACT, THREAT_EXPLOIT_STATUS, THREAT_SEVERITY = 0, 1, 3
REMEDIATION_VENDOR_FIX = 2
NOTE_DESCRIPTION, NOTE_FAQ, NOTE_OTHER, NOTE_TAG, NOTE_CNA = 2, 4, 6, 7, 8
STATUS_KNOWN_AFFECTED = 3


def _v(text: str) -> dict:
    return {"Value": text}


def _stamp(us: int) -> str:
    """CVRF dates carry no zone: "2024-01-09T08:00:00"."""
    return us_to_datetime(us).strftime("%Y-%m-%dT%H:%M:%S")


def _product_tree() -> dict:
    windows = [{"ProductID": pid, "Value": v[0]} for pid, v in WINDOWS_PRODUCTS.items()]
    dotnet = [
        {"ProductID": f"{DOTNET_PREFIX}-{pid}", "Value": f"Microsoft .NET Framework 4.8 on {v[0]}"}
        for pid, v in WINDOWS_PRODUCTS.items()
    ]
    sql = [{"ProductID": SQL_PRODUCT[0], "Value": SQL_PRODUCT[1]}]
    edge = [{"ProductID": EDGE_PRODUCT[0], "Value": EDGE_PRODUCT[1]}]
    families = [
        ("Browser", edge),
        ("Developer Tools", dotnet),
        ("SQL Server", sql),
        ("Windows", windows),
    ]
    return {
        "Branch": [
            {
                "Type": 0,
                "Name": "Microsoft",
                "Items": [{"Type": 1, "Name": name, "Items": items} for name, items in families],
            }
        ],
        # Products appear again at the root, as in the real documents (dedupe on ProductID).
        "FullProductName": edge + dotnet + sql + windows,
    }


def _exploit_status(cve: Cve) -> str:
    if cve.cna != "Microsoft":
        return "DOS:N/A"
    likely = "Exploitation Detected" if cve.exploited else "Exploitation Less Likely"
    return (
        f"Publicly Disclosed:{'Yes' if cve.disclosed else 'No'};"
        f"Exploited:{'Yes' if cve.exploited else 'No'};"
        f"Latest Software Release:{likely};DOS:N/A"
    )


def _vulnerability(cve: Cve, ordinal: int, catalog: Catalog) -> dict:
    release = day_us(cve.month.tuesday, 8)
    products = sorted(cve.fixes) if cve.fixes else [EDGE_PRODUCT[0]]
    notes = [
        {"Title": "Description", "Type": NOTE_DESCRIPTION, "Ordinal": "0"},
        {"Title": cve.tag, "Type": NOTE_TAG, "Ordinal": "20", "Value": cve.tag},
        {"Title": cve.cna, "Type": NOTE_CNA, "Ordinal": "30", "Value": cve.cna},
    ]
    if cve.cna == "Microsoft":
        notes.insert(
            1,
            {
                "Title": "FAQ",
                "Type": NOTE_FAQ,
                "Ordinal": "10",
                "Value": "<p><strong>How could an attacker exploit this vulnerability?</strong></p>",
            },
        )
        notes.append(
            {"Title": "Customer Action Required", "Type": NOTE_OTHER, "Ordinal": "40", "Value": "Yes"}
        )
    threats = []
    if cve.impact:
        threats += [
            {"Description": _v(cve.impact), "ProductID": [p], "Type": THREAT_IMPACT, "DateSpecified": False}
            for p in products
        ]
    if cve.severity:
        threats += [
            {"Description": _v(cve.severity), "ProductID": [p], "Type": THREAT_SEVERITY, "DateSpecified": False}
            for p in products
        ]
    threats.append(
        {"Description": _v(_exploit_status(cve)), "Type": THREAT_EXPLOIT_STATUS, "DateSpecified": False}
    )
    scores = []
    if cve.base is not None:
        scores = [
            {"BaseScore": cve.base, "TemporalScore": cve.temporal, "Vector": cve.vector, "ProductID": [p]}
            for p in products
        ]
    return {
        "Title": _v(cve.title) if cve.title else {},
        "Notes": notes,
        "DiscoveryDateSpecified": False,
        "ReleaseDateSpecified": False,
        "CVE": cve.cve,
        "ProductStatuses": [{"ProductID": products, "Type": STATUS_KNOWN_AFFECTED}],
        "Threats": threats,
        "CVSSScoreSets": scores,
        "Remediations": _remediations(cve, catalog),
        "Acknowledgments": [{"Name": [], "URL": [""]}],
        "Ordinal": str(ordinal),
        "RevisionHistory": [
            {"Number": "1.0", "Date": _stamp(release), "Description": _v("<p>Information published.</p>\n")}
        ],
    }


def _remediations(cve: Cve, catalog: Catalog) -> list[dict]:
    if cve.fixed_release:
        return [
            {
                "Description": _v("Release Notes"),
                "URL": "https://learn.microsoft.com/en-us/deployedge/microsoft-edge-relnotes-security",
                "ProductID": [EDGE_PRODUCT[0]],
                "AffectedFiles": [],
                "RestartRequired": {},
                "SubType": "Security Update",
                "FixedBuild": cve.fixed_release,
                "DateSpecified": False,
                "Type": REMEDIATION_VENDOR_FIX,
            }
        ]
    by_patch: dict[int, list[str]] = {}
    for pid, idx in sorted(cve.fixes.items()):
        by_patch.setdefault(idx, []).append(pid)
    out = []
    for idx, pids in sorted(by_patch.items()):
        patch = catalog.patches[idx]
        fix = {
            "Description": _v(patch.kb),
            "URL": f"https://catalog.update.microsoft.com/v7/site/Search.aspx?q=KB{patch.kb}",
            "ProductID": pids,
            "AffectedFiles": [],
            "RestartRequired": _v("Yes" if patch.reboot != "NeverReboots" else "No"),
            "SubType": "Servicing Stack Update" if patch.kind == "ssu" else "Security Update",
            "FixedBuild": patch.fixed_build,
            "DateSpecified": False,
        }
        if patch.supersedes:
            fix["Supercedence"] = patch.supersedes
        notes = {
            "Description": {},
            "URL": f"https://support.microsoft.com/help/{patch.kb}",
            "ProductID": pids,
            "AffectedFiles": [],
            "SubType": patch.kb,
            "Type": 6,  # Release Notes (inferred value, data-sources.md 1.4)
            "DateSpecified": False,
        }
        out += [{**fix, "Type": REMEDIATION_VENDOR_FIX}, notes]
    return out


def month_document(month: Month, catalog: Catalog, period: Period) -> dict:
    initial = day_us(month.tuesday, 8)
    # Documents are revised after release; the last revision falls inside the period at most.
    current = min(initial + 9 * DAY_US, period.end_us - 12 * 3_600_000_000)
    current = max(current, initial)
    cves = [c for c in catalog.cves if c.month == month]
    return {
        "DocumentTitle": _v(month.title),
        "DocumentType": _v("Security Update"),
        "DocumentPublisher": {
            "ContactDetails": _v("secure@microsoft.com"),
            "IssuingAuthority": _v(
                "The Microsoft Security Response Center (MSRC) identifies, monitors, resolves, and "
                "responds to security incidents and Microsoft software security vulnerabilities."
            ),
            "Type": 0,
        },
        "DocumentTracking": {
            "Identification": {"ID": _v(month.doc_id), "Alias": _v(month.doc_id)},
            "Status": 2,
            "Version": "1.0",
            "RevisionHistory": [
                {"Number": "1", "Date": _stamp(initial), "Description": _v(month.title)},
                {"Number": "2", "Date": _stamp(current), "Description": _v(month.title)},
            ],
            "InitialReleaseDate": _stamp(initial),
            "CurrentReleaseDate": _stamp(current),
        },
        "DocumentNotes": [
            {
                "Title": "Release Notes",
                "Audience": "Public",
                "Type": 1,
                "Ordinal": "0",
                "Value": f"<h2>This release consists of {len(cves)} CVEs</h2>",
            }
        ],
        "ProductTree": _product_tree(),
        "Vulnerability": [_vulnerability(c, i + 1, catalog) for i, c in enumerate(cves)],
    }


def write_msrc(root: Path, catalog: Catalog, period: Period) -> int:
    folder = root / "bulletins" / "msrc"
    folder.mkdir(parents=True, exist_ok=True)
    for month in catalog.months:
        doc = month_document(month, catalog, period)
        (folder / f"{month.doc_id}.json").write_text(json.dumps(doc), encoding="utf-8")
    return len(catalog.months)


def write_kev(root: Path, catalog: Catalog, period: Period, linux: LinuxCve | None = None) -> int:
    """CISA's catalog as of the period end, listing the generated exploited CVEs (and the
    planted Linux one)."""
    folder = root / "bulletins" / "kev"
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for c in catalog.cves:
        if not c.exploited:
            continue
        added = c.month.tuesday + timedelta(days=1)
        if day_us(added) > period.end_us:
            continue
        rows.append(
            {
                "cveID": c.cve,
                "vendorProject": "Microsoft",
                "product": "Windows",
                "vulnerabilityName": f"Microsoft {c.title}",
                "dateAdded": added.isoformat(),
                "shortDescription": f"Microsoft Windows contains an {c.impact.lower()} vulnerability.",
                "requiredAction": (
                    "Apply mitigations per vendor instructions, follow applicable BOD 26-04 "
                    "guidance for cloud services, or discontinue use of the product if "
                    "mitigations are unavailable."
                ),
                "dueDate": (added + timedelta(days=21)).isoformat(),
                "knownRansomwareCampaignUse": "Unknown",
                "notes": f"https://msrc.microsoft.com/update-guide/vulnerability/{c.cve} ; "
                f"https://nvd.nist.gov/vuln/detail/{c.cve}",
                "cwes": ["CWE-416"],
            }
        )
    if linux is not None:
        added = linux.published + timedelta(days=3)
        rows.append(
            {
                "cveID": linux.cve,
                "vendorProject": linux.package,
                "product": linux.package,
                "vulnerabilityName": f"{linux.package} Heap-Based Buffer Overflow Vulnerability",
                "dateAdded": added.isoformat(),
                "shortDescription": f"{linux.package} contains a heap-based buffer overflow vulnerability.",
                "requiredAction": "Apply mitigations per vendor instructions or discontinue use of the product if mitigations are unavailable.",
                "dueDate": (added + timedelta(days=21)).isoformat(),
                "knownRansomwareCampaignUse": "Unknown",
                "notes": f"https://ubuntu.com/security/{linux.cve} ; https://nvd.nist.gov/vuln/detail/{linux.cve}",
                "cwes": ["CWE-122"],
            }
        )
    rows.sort(key=lambda r: (r["dateAdded"], r["cveID"]), reverse=True)
    doc = {
        "title": "CISA Catalog of Known Exploited Vulnerabilities",
        "catalogVersion": period.end.strftime("%Y.%m.%d"),
        "dateReleased": f"{period.end.isoformat()}T17:04:19.9796Z",
        "count": len(rows),
        "vulnerabilities": rows,
    }
    (folder / "known_exploited_vulnerabilities.json").write_text(
        json.dumps(doc, indent=4), encoding="utf-8"
    )
    return len(rows)


def write_epss(
    root: Path,
    catalog: Catalog,
    period: Period,
    rng: np.random.Generator,
    linux: list[LinuxCve] = (),
    linux_rng: np.random.Generator | None = None,
) -> int:
    """Weekly FIRST files (and the last day), scoring every CVE released by that date (the
    Linux CVEs from a generator of their own, so the Windows scores stay as they were)."""
    folder = root / "bulletins" / "epss"
    folder.mkdir(parents=True, exist_ok=True)
    cves = [c for c in catalog.cves if c.cve.startswith("CVE-")]
    base = np.where([c.exploited for c in cves], 0.6, 0.0) + rng.beta(0.4, 12.0, len(cves))
    all_names = [c.cve for c in cves] + [c.cve for c in linux]
    released = [day_us(c.month.tuesday) for c in cves] + [day_us(c.published) for c in linux]
    if linux:
        base = np.concatenate([base, (linux_rng or np.random.default_rng(0)).beta(0.4, 12.0, len(linux))])
    dates = period.dates()[::7]
    if dates[-1] != period.end:
        dates.append(period.end)
    for n, day in enumerate(dates):
        known = np.array([r <= day_us(day) for r in released])
        score = np.clip(base * (1 + 0.03 * n), 0.0001, 0.9999)[known]
        names = np.array(all_names)[known]
        order = np.argsort(names)
        pct = (np.argsort(np.argsort(score)) + 1) / max(len(score), 1)
        out = io.StringIO()
        out.write(f"#model_version:v2025.03.14,score_date:{day.isoformat()}T12:55:00Z\n")
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["cve", "epss", "percentile"])
        writer.writerows(
            (names[i], f"{score[i]:.5f}", f"{pct[i]:.5f}") for i in order
        )
        path = folder / f"epss_scores-{day.isoformat()}.csv.gz"
        # mtime=0 and no file name in the header: byte-identical output for a seed.
        with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz:
            gz.write(out.getvalue().encode("utf-8"))
    return len(dates)
