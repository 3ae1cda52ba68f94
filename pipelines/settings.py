"""Where things are: the estate folder, the warehouse file, its published copy and the reports.

Every path comes from the environment (interfaces.md section 1) with a project-local default,
so that `patchledger`, `dg dev` and the tests agree on one warehouse.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# The SQL files: `sql/` at the top of a checkout, `pipelines/sql/` in an installed wheel (setup.py).
_PACKAGED_SQL = Path(__file__).resolve().parent / "sql"
SQL_DIR = _PACKAGED_SQL if _PACKAGED_SQL.is_dir() else PROJECT_ROOT / "sql"


def default_dagster_home() -> Path:
    """`.dagster` of the checkout; for an installed package, of the working directory (never
    inside site-packages)."""
    return (Path.cwd() if _PACKAGED_SQL.is_dir() else PROJECT_ROOT) / ".dagster"


def _path(env: str, default: str) -> Path:
    value = os.environ.get(env) or default
    path = Path(value)
    return path if path.is_absolute() else (Path.cwd() / path)


def estate_dir() -> Path:
    return _path("PATCHLEDGER_ESTATE", "data/estate")


def warehouse_path() -> Path:
    return _path("PATCHLEDGER_WAREHOUSE", "data/warehouse.duckdb")


def default_ledger_dir(estate: str | Path) -> Path:
    """The ledger's files: `ledger/` beside the estate folder (not in it: the estate is input)."""
    return Path(estate).resolve().parent / "ledger"


def ledger_dir() -> Path:
    value = os.environ.get("PATCHLEDGER_LEDGER")
    return _path("PATCHLEDGER_LEDGER", "") if value else default_ledger_dir(estate_dir())


def reports_dir() -> Path:
    """PATCHLEDGER_REPORTS, else `reports/` beside the warehouse: a run on another warehouse
    never writes over this one's packs."""
    if os.environ.get("PATCHLEDGER_REPORTS"):
        return _path("PATCHLEDGER_REPORTS", "reports")
    return warehouse_path().parent / "reports"


def published_path(warehouse: Path | None = None) -> Path:
    """The read-only copy of a warehouse (default: this one) that analysts open,
    `<name>-read.duckdb` beside it, replaced after each successful run (pipelines.publish)."""
    live = Path(warehouse) if warehouse else warehouse_path()
    return live.with_name(f"{live.stem}-read{live.suffix}")


def source_mode() -> str:
    mode = os.environ.get("PATCHLEDGER_SOURCE", "files")
    if mode not in ("files", "azure"):
        raise ValueError(f"PATCHLEDGER_SOURCE must be 'files' or 'azure', not {mode!r}")
    return mode
