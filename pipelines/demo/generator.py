"""`patchledger generate`: a synthetic, deterministic demo estate in the real source formats.

    generate_estate(Path("data/estate"), vms=200, days=90, seed=7)

writes the estate folder of docs/estate.md plus demo_truth.json (the planted hard cases, see
docs/demo-estate.md). Same arguments, byte-identical files: every draw comes from one seeded
numpy generator, and no file carries the wall-clock time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import numpy as np

from .advisories import linux_cves, linux_kev, write_osv, write_vulnrichment
from .authz import build_plan
from .auto_updates import plan_auto_updates, plan_maintenance, write_maintenance, write_policy
from .backup import write_backup
from .bulletins import write_epss, write_kev, write_msrc
from .cases import daily_truth, plant
from .catalog import build_catalog
from .fleet import build_fleet
from .landing import set_landing_times
from .period import DEFAULT_END, Period
from .registers import write_registers
from .simulate import simulate
from .telemetry import observe, write_operations, write_telemetry
from .telemetry_vms import instance_view_os, os_build_case


@dataclass
class GenerationSummary:
    path: Path
    vms: int
    days: int
    seed: int
    start: date
    end: date
    files: int
    counts: dict[str, int] = field(default_factory=dict)
    planted_cases: int = 0

    def __str__(self) -> str:
        lines = [
            f"Demo estate written to {self.path}",
            f"  {self.vms} VMs, {self.days} days ({self.start} .. {self.end}), seed {self.seed}",
            f"  {self.files} files, {self.planted_cases} planted cases in demo_truth.json",
        ]
        lines += [f"  {name:<24} {value:>12,}" for name, value in self.counts.items()]
        return "\n".join(lines)


def generate_estate(
    out: Path, vms: int = 200, days: int = 90, seed: int = 7, start: date | None = None
) -> GenerationSummary:
    if days < 14:
        raise ValueError("the demo estate needs at least 14 days to show a monthly cycle")
    if start is None:
        start = DEFAULT_END - timedelta(days=days - 1)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    period = Period(start, days)
    # One generator per concern, all derived from the seed: adding draws to one part of the
    # estate does not shift the others.
    streams = np.random.SeedSequence(seed).spawn(6)
    rng = [np.random.default_rng(s) for s in streams]
    catalog = build_catalog(period, rng[0])
    fleet = build_fleet(vms, rng[1])
    plan = build_plan(catalog, fleet, period, rng[2])
    sim = simulate(catalog, fleet, plan, period, rng[3])
    planted = plant(catalog, fleet, plan, sim, period, seed)
    obs = observe(sim, fleet, period, rng[4])

    # OSV and Vulnrichment draw from their own generator: the streams above stay as they were.
    advisory_rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(7)[6])
    linux = linux_cves(catalog, advisory_rng)
    planted_kev = linux_kev(linux, period)
    kev_cves = {c.cve for c in catalog.cves if c.exploited} | ({planted_kev.cve} if planted_kev else set())
    counts = {
        "msrc_months": write_msrc(out, catalog, period),
        "kev_entries": write_kev(out, catalog, period, planted_kev),
        "epss_files": write_epss(out, catalog, period, rng[5], linux, advisory_rng),
        "osv_advisories": write_osv(out, catalog, linux),
        "vulnrichment_records": write_vulnrichment(out, catalog, linux, kev_cves, period, advisory_rng),
    }
    auto_updates = plan_auto_updates(fleet, period)
    fleet.vms["wu_manual_from_us"] = auto_updates.wu_manual_from_us
    maintenance_cases = plan_maintenance(fleet, auto_updates)
    snapshots = instance_view_os(auto_updates.settings, catalog, fleet, sim)
    counts.update(write_telemetry(out, catalog, fleet, sim, obs, period, seed, snapshots))
    planted.cases.extend(os_build_case(snapshots, fleet))
    counts["maintenance_assignments"] = write_maintenance(out, fleet, auto_updates, period)
    planted.cases.extend(write_policy(out, fleet, auto_updates, period))
    planted.cases.extend(maintenance_cases)
    counts["recovery_points"], backup_cases = write_backup(out, fleet, period)
    planted.cases.extend(backup_cases)
    counts["patch_operations"] = write_operations(out, planted.operations)
    counts.update(write_registers(out, catalog, plan, planted, period))
    planted.cases.append(set_landing_times(out, period))
    truth = {
        "generator": {"vms": vms, "days": days, "seed": seed, "start": start.isoformat(),
                      "end": period.end.isoformat()},
        "cases": planted.cases,
        "truth": daily_truth(catalog, fleet, sim, period),
    }
    (out / "demo_truth.json").write_text(json.dumps(truth, indent=1), encoding="utf-8")
    files = sum(1 for p in out.rglob("*") if p.is_file())
    return GenerationSummary(
        path=out, vms=vms, days=days, seed=seed, start=start, end=period.end, files=files,
        counts=counts, planted_cases=len(planted.cases),
    )
