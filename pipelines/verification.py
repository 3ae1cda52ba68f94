"""`patchledger verify`: re-check an evidence pack's manifest and the ledger's hash chain."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from pipelines.reporting import sha256_file


def verify_manifest(directory: Path) -> list[str]:
    """Every file listed in manifest.json exists with the recorded SHA-256; nothing unlisted."""
    manifest_path = directory / "manifest.json"
    if not manifest_path.exists():
        return [f"{manifest_path}: no manifest"]
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        files = manifest["files"]
    except (ValueError, KeyError) as exc:
        return [f"{manifest_path}: unreadable manifest ({exc})"]
    problems = []
    for name, expected in sorted(files.items()):
        path = directory / name
        if not path.exists():
            problems.append(f"{path}: listed in the manifest but missing")
        elif sha256_file(path) != expected:
            problems.append(f"{path}: SHA-256 differs from the manifest (the file was changed)")
    if manifest.get("as_of") and directory.name != manifest["as_of"]:
        problems.append(f"{manifest_path}: as_of {manifest['as_of']} does not match the folder {directory.name}")
    # The counts: each population file holds the rows the manifest says (header excluded).
    for name, expected in sorted((manifest.get("population_rows") or {}).items()):
        path = directory / "populations" / f"{name}.csv"
        if path.exists():
            with path.open(encoding="utf-8", newline="") as handle:
                rows = sum(1 for _ in csv.reader(handle)) - 1
            if rows != expected:
                problems.append(f"{path}: {rows} rows, the manifest says {expected}")
    listed = set(files) | {"manifest.json"}
    for path in sorted(directory.rglob("*")):
        if path.is_file() and str(path.relative_to(directory)) not in listed:
            problems.append(f"{path}: not listed in the manifest")
    return problems


def verify_anchored_heads(conn, directory: Path) -> list[str]:
    """The ledger rows the pack anchored still carry the chain hashes recorded in the manifest."""
    from pipelines.warehouse import table_exists

    try:
        heads = json.loads((directory / "manifest.json").read_text(encoding="utf-8")).get("ledger_heads", {})
    except (OSError, ValueError):
        return []
    problems = []
    for register, head in sorted(heads.items()):
        table = f"ledger.{register}"
        found = (
            conn.execute(f"SELECT chain_sha256 FROM {table} WHERE seq = ?", [head["seq"]]).fetchall()
            if table_exists(conn, table) else []
        )
        if not found or found[0][0] != head["chain_sha256"]:
            problems.append(f"ledger.{register}: row {head['seq']} no longer carries the chain hash "
                            "anchored in the manifest")
    return problems


def verify_all(directory: Path, warehouse: Path) -> list[str]:
    problems = verify_manifest(directory)
    if warehouse.exists():
        from pipelines.ledger import verify_ledger
        from pipelines.resources import connect_warehouse

        conn = connect_warehouse(str(warehouse), read_only=True)
        try:
            problems += [str(p) for p in verify_ledger(conn)]
            problems += verify_anchored_heads(conn, directory)
        finally:
            conn.close()
    else:
        problems.append(f"{warehouse}: no warehouse to verify the ledger against")
    return problems
