"""The pack's charts as SVG text, shared by the report (HTML and PDF) and the dashboard.

matplotlib with a fixed hash salt, no date and text kept as text: the same series give the same
bytes. Each chart returns "" when it has nothing to show.
"""

from __future__ import annotations

import io
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from pipelines.reporting.queries import SEVERITIES  # noqa: E402

BLUE, RED, GREY, ORANGE = "#4c78a8", "#e45756", "#9d9d9d", "#f58518"
SEVERITY_COLOURS = {"Critical": "#b3261e", "Important": ORANGE, "Moderate": "#eeca3b", "Low": BLUE}
FRAMEWORK_LABELS = {"internal": "Internal policy", "pci_dss": "PCI DSS 6.3.3", "fedramp": "FedRAMP",
                    "cisa_kev": "CISA KEV", "cisa_bod2604": "CISA BOD 26-04"}
KIND_LABELS = {"azure_vm": "Azure VMs", "arc": "Arc machines", "non_azure": "Non-Azure machines"}


def _style() -> None:
    matplotlib.rcParams.update({
        "svg.hashsalt": "patchledger", "svg.fonttype": "none", "font.family": "DejaVu Sans",
        "font.size": 9, "axes.spines.top": False, "axes.spines.right": False,
    })


def _svg(fig) -> str:
    fig.tight_layout()
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None})
    plt.close(fig)
    svg = buffer.getvalue()
    return svg[svg.index("<svg"):]


def _legend_above(ax) -> None:
    """The legend in one row above the plot, where it can never cover a bar or a line."""
    handles, _ = ax.get_legend_handles_labels()
    ax.legend(loc="lower left", bbox_to_anchor=(0, 1.0), ncol=len(handles), frameon=False,
              borderaxespad=0.2, handlelength=1.5, columnspacing=1.2)


def gaps_by_type(rows: list[dict]) -> str:
    """Open gaps per type, within SLA and overdue."""
    if not rows:
        return ""
    fig, ax = plt.subplots(figsize=(7, 0.4 * len(rows) + 0.9))
    labels = [r["label"] for r in rows][::-1]
    within = [r["gaps"] - r["overdue"] for r in rows][::-1]
    ax.barh(labels, within, color=BLUE, label="within SLA")
    ax.barh(labels, [r["overdue"] for r in rows][::-1], left=within, color=RED, label="overdue")
    ax.set_xlabel("open gaps")
    _legend_above(ax)
    return _svg(fig)


def trend(rows: list[dict]) -> str:
    """Compliance share per severity per day, and below it, apart, the stale machines per day."""
    days = sorted({r["day"] for r in rows})
    if not days:
        return ""
    fig, (share_ax, stale_ax) = plt.subplots(
        2, 1, figsize=(7, 3.6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    for severity in [*SEVERITIES, "(none)"]:
        points = [(r["day"], r["compliance_share"]) for r in rows if r["severity"] == severity]
        if points:
            share_ax.plot([p[0] for p in points], [100 * p[1] for p in points], label=severity,
                          color=SEVERITY_COLOURS.get(severity, GREY), linewidth=1.5)
    share_ax.set_ylabel("compliant pairs (%)")
    share_ax.set_ylim(0, 100)
    _legend_above(share_ax)
    stale = {r["day"]: r["stale_machines"] or 0 for r in rows}
    stale_ax.bar(days, [stale[d] for d in days], color=GREY, width=1.0)
    stale_ax.set_ylabel("stale\nmachines")
    fig.autofmt_xdate()
    return _svg(fig)


def aging(rows: list[dict]) -> str:
    """Open gaps by age, within SLA and overdue."""
    if not any(r["within_sla"] or r["overdue"] for r in rows):
        return ""
    fig, ax = plt.subplots(figsize=(7, 2.6))
    labels = [r["bucket"] for r in rows]
    ax.bar(labels, [r["within_sla"] for r in rows], color=BLUE, label="within SLA")
    ax.bar(labels, [r["overdue"] for r in rows], bottom=[r["within_sla"] for r in rows], color=RED, label="overdue")
    ax.set_ylabel("open gaps")
    ax.set_xlabel("days since first seen")
    _legend_above(ax)
    return _svg(fig)


def sla_share(rows: list[dict]) -> str:
    """Share of decided remediation episodes within each framework's SLA."""
    rows = [r for r in rows if r["decided"]]
    if not rows:
        return ""
    fig, ax = plt.subplots(figsize=(7, 0.4 * len(rows) + 0.9))
    labels = [f'{FRAMEWORK_LABELS.get(r["framework"], r["framework"])} ({r["decided"]})' for r in rows][::-1]
    shares = [100 * (r["within_sla"] or 0) for r in rows][::-1]
    bars = ax.barh(labels, shares, color=BLUE)
    ax.bar_label(bars, labels=[f"{s:.1f} %" for s in shares], padding=3)
    ax.set_xlim(0, 110)
    ax.set_xlabel("episodes within SLA (%), decided episodes in brackets")
    return _svg(fig)


def time_to_patch(rows: list[dict]) -> str:
    """Median and 90th percentile of days to patch per severity."""
    if not rows:
        return ""
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(rows) + 0.9))
    labels = [f'{r["severity"] or "(none)"} ({r["closed_by_install"]})' for r in rows][::-1]
    ax.barh(labels, [r["p90_days"] for r in rows][::-1], color="#c6d4e6", label="90th percentile")
    ax.barh(labels, [r["median_days"] for r in rows][::-1], color=BLUE, height=0.5, label="median")
    ax.set_xlabel("days from detection to installation (episodes in brackets)")
    _legend_above(ax)
    return _svg(fig)


def coverage(rows: list[dict]) -> str:
    """Machines per kind: assessed recently, stale, never assessed."""
    if not rows:
        return ""
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(rows) + 0.9))
    labels = [KIND_LABELS.get(r["machine_kind"], r["machine_kind"]) for r in rows][::-1]
    left = [0] * len(rows)
    for column, colour, label in (("assessed", BLUE, "assessed"), ("stale", ORANGE, "stale"),
                                  ("never_assessed", RED, "never assessed")):
        values = [r[column] for r in rows][::-1]
        ax.barh(labels, values, left=left, color=colour, label=label)
        left = [a + b for a, b in zip(left, values, strict=True)]
    ax.set_xlabel("machines")
    _legend_above(ax)
    return _svg(fig)


# (key, title, caption, function): the order in which the pack shows them.
CHARTS = [
    ("trend", "Compliance over the period", "Share of applicable machine x patch pairs installed (or "
     "superseded by an installed patch) at the end of each day, per severity; below, apart, the machines "
     "whose assessment was stale that day (their last known state stands in the line above).", trend),
    ("aging", "Open gaps by age", "Open gaps (stale assessments excluded) by days since first seen.", aging),
    ("sla_share", "Share within SLA per framework", "Remediation episodes decided under each framework "
     "(closed, or still open past the due date) that were closed by the due date.", sla_share),
    ("time_to_patch", "Time to patch per severity", "Days from detection to installation of the "
     "remediation episodes closed by an installation.", time_to_patch),
    ("coverage", "Assessment coverage", "Machines in inventory by kind and assessment freshness.", coverage),
    ("gaps_by_type", "Open gaps by type", "Open gaps per type, within SLA and overdue.", gaps_by_type),
]


def render_charts(series: dict[str, list[dict]]) -> list[dict[str, Any]]:
    """[{key, title, caption, svg}] of every chart that has data."""
    _style()
    charts = []
    for key, title, caption, draw in CHARTS:
        svg = draw(series.get(key, []))
        if svg:
            charts.append({"key": key, "title": title, "caption": caption, "svg": svg})
    return charts
