"""A seeded, reproducible sample of an evidence-pack population for auditors.

The population file is read from the pack (after its manifest is verified), sorted by its stable
id, and `size` rows are drawn without replacement by numpy's PCG64 generator seeded with `seed`:
anyone with the pack, the population name, the size and the seed draws the same rows.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from pipelines.reporting import POPULATIONS
from pipelines.verification import verify_manifest


class SampleError(ValueError):
    pass


def draw_sample(pack: Path, population: str, size: int, seed: int) -> tuple[list[str], list[dict]]:
    if population not in POPULATIONS:
        raise SampleError(f"unknown population {population!r}; one of {sorted(POPULATIONS)}")
    problems = verify_manifest(pack)
    if problems:
        raise SampleError("the evidence pack does not verify: " + "; ".join(problems))
    path = pack / "populations" / f"{population}.csv"
    if not path.exists():
        raise SampleError(f"{path}: this pack has no {population} population")
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        columns = list(reader.fieldnames or [])
        rows = list(reader)
    id_column = POPULATIONS[population][1]
    rows.sort(key=lambda r: r[id_column])
    picks = np.random.Generator(np.random.PCG64(seed)).choice(len(rows), size=min(size, len(rows)),
                                                              replace=False)
    return ["sample_order", *columns], [{"sample_order": i + 1, **rows[p]} for i, p in enumerate(picks)]
