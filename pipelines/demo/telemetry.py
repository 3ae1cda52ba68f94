"""Writes what Azure and Log Analytics would have recorded, in their export formats, via DuckDB.

The simulation's numpy arrays are registered as Arrow tables; each output file is one
`COPY (SELECT ...)` with an ORDER BY, so files are byte-identical for a seed. Activity ids are
md5-derived GUIDs of (seed, machine, day or run), never random at write time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from .catalog import Catalog
from .fleet import Fleet
from .period import DAY_US, Period
from .simulate import STATE_NAMES, Simulation
from .telemetry_la import write_log_analytics
from .telemetry_rg import write_resource_graph
from .telemetry_sql import MACROS
from .telemetry_vms import write_vms


@dataclass
class Observations:
    assess: pa.Table  # vm, day, t, reboot
    missing: pa.Table  # vm, day, t, patch
    la_state: pa.Table  # vm, day, t, patch, needed


def observe(sim: Simulation, fleet: Fleet, period: Period, rng: np.random.Generator) -> Observations:
    """Daily assessments: per machine a time of day, per pair the installed and the newest patch."""
    n = len(fleet)
    offset = rng.integers(0, 22 * 60, n) * 60_000_000
    reports_la = np.isin(fleet.col("source"), ["la", "both"])
    assess, missing, la_state = [], [], []
    pairs = np.arange(len(sim.pair_vm))
    vm_p = sim.pair_vm
    for d in range(period.days):
        t = period.start_us + d * DAY_US + offset + rng.integers(0, 1_800_000_000, n)
        present = t <= sim.report_until
        vms = np.flatnonzero(present)
        assess.append((vms, np.full(len(vms), d), t[vms], t[vms] >= sim.reboot_from[vms]))
        t_p = t[vm_p]
        level = sim.levels_at(pairs, t_p)
        top = sim.top_at(pairs, t_p)
        gap = present[vm_p] & (top > level)
        idx = np.flatnonzero(gap)
        missing.append((vm_p[idx], np.full(len(idx), d), t_p[idx], sim.chain_mat[sim.pair_chain[idx], top[idx]]))
        # The legacy agent also lists what is installed, once per assessment.
        inst = np.flatnonzero(present[vm_p] & reports_la[vm_p] & (level >= 0))
        need = idx[reports_la[vm_p[idx]]]
        for rows, position, needed in ((inst, level, False), (need, top, True)):
            la_state.append(
                (vm_p[rows], np.full(len(rows), d), t_p[rows],
                 sim.chain_mat[sim.pair_chain[rows], position[rows]], np.full(len(rows), needed))
            )

    def table(chunks, names):
        return pa.table({k: np.concatenate([c[i] for c in chunks]) for i, k in enumerate(names)})

    return Observations(
        assess=table(assess, ["vm", "day", "t", "reboot"]),
        missing=table(missing, ["vm", "day", "t", "patch"]),
        la_state=table(la_state, ["vm", "day", "t", "patch", "needed"]),
    )


def _patches_frame(catalog: Catalog) -> pd.DataFrame:
    ps = catalog.patches
    return pd.DataFrame(
        {
            "patch": np.arange(len(ps)),
            "patch_key": [p.key for p in ps],
            "kb": [p.kb for p in ps],
            "title": [p.title for p in ps],
            "classification": [p.classification for p in ps],
            "la_classification": [p.la_classification for p in ps],
            "severity": [p.severity if p.os_type == "Windows" else None for p in ps],
            "reboot": [p.reboot for p in ps],
            "release_us": [p.release_us for p in ps],
            "package": [p.package for p in ps],
            "version": [p.version for p in ps],
            "patch_id": [p.patch_id for p in ps],
            "guid": [p.guid for p in ps],
            "cves": [",".join(p.cves) for p in ps],
            "p_os": [p.os_type for p in ps],
        }
    )


def _runs(sim: Simulation, period: Period) -> tuple[pa.Table, pa.Table]:
    """Install runs inside the period and their patch lines (attempts plus planted extras)."""
    vm, slot = np.nonzero(sim.run_on)
    t = sim.run_time[vm, slot]
    keep = (t >= period.start_us) & (t <= period.end_us)
    vm, slot, t = vm[keep], slot[keep], t[keep]
    runs = pa.table(
        {"vm": vm, "slot": slot, "t": t, "day": (t - period.start_us) // DAY_US,
         "reboot_required": sim.reboot_run[vm, slot]}
    )
    a = sim.attempts
    extra = np.array(sim.extra_children, dtype=np.int64).reshape(-1, 4)
    children = pa.table(
        {
            "vm": np.concatenate([a["vm"], extra[:, 0]]),
            "slot": np.concatenate([a["slot"], extra[:, 1]]),
            "patch": np.concatenate([a["patch"], extra[:, 2]]),
            "state": np.asarray(STATE_NAMES, dtype=object)[np.concatenate([a["state"], extra[:, 3]])],
        }
    )
    return runs, children


def write_telemetry(
    root: Path, catalog: Catalog, fleet: Fleet, sim: Simulation, obs: Observations,
    period: Period, seed: int, snapshots: pd.DataFrame,
) -> dict[str, int]:
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    con.execute(MACROS)
    runs, children = _runs(sim, period)
    inputs = {
        "vms": fleet.vms.assign(vm=np.arange(len(fleet))),
        "patches": _patches_frame(catalog),
        "assess": obs.assess,
        "missing": obs.missing,
        "la_state": obs.la_state,
        "runs": runs,
        "children": children,
    }
    # Real tables, not registered views: the parallel writers use their own cursors, which
    # see the database's tables but not another connection's registrations.
    for name, frame in inputs.items():
        con.register(f"{name}_input", frame)
        con.execute(f"CREATE TABLE {name} AS SELECT * FROM {name}_input")
        con.unregister(f"{name}_input")
    con.execute(f"CREATE MACRO seed() AS '{int(seed)}'")
    counts = {}
    counts.update(write_vms(con, root, period, snapshots))
    counts.update(write_resource_graph(con, root, period))
    counts.update(write_log_analytics(con, root, period))
    con.close()
    return counts



def write_operations(root: Path, operations: list[dict]) -> int:
    """azure/patch_operations/*.json: one small document per API call (json is fine here)."""
    folder = root / "azure" / "patch_operations"
    folder.mkdir(parents=True, exist_ok=True)
    for op in operations:
        name = op.pop("_file")
        (folder / name).write_text(json.dumps(op, indent=2), encoding="utf-8")
    return len(operations)


def success_error(os_type: str) -> dict:
    """Real responses carry a non-null error object even on success."""
    if os_type == "Windows":
        return {"details": [], "code": "Success", "message": "0 error/s reported"}
    return {"details": [], "code": "0", "message": "0 error/s reported."}

