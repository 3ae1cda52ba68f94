"""`patchledger verify`: re-check an evidence pack's manifest and the ledger's hash chain."""

from __future__ import annotations

import csv
import json
from datetime import UTC, date, datetime, timedelta
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
    if manifest.get("as_of"):
        from pipelines.pastdate import pack_folder

        known_by = datetime.fromisoformat(manifest["known_by"]) if manifest.get("known_by") else None
        folder = pack_folder(date.fromisoformat(manifest["as_of"]), known_by)
        if directory.name != folder:
            problems.append(f"{manifest_path}: as_of {manifest['as_of']} does not match the folder {directory.name}")
    # The counts: each population file holds the rows the manifest says (header excluded).
    for name, expected in sorted((manifest.get("population_rows") or {}).items()):
        path = directory / "populations" / f"{name}.csv"
        if path.exists():
            with path.open(encoding="utf-8", newline="") as handle:
                rows = sum(1 for _ in csv.reader(handle)) - 1
            if rows != expected:
                problems.append(f"{path}: {rows} rows, the manifest says {expected}")
    if manifest.get("as_of"):
        problems += verify_as_of(directory, date.fromisoformat(manifest["as_of"]))
    listed = set(files) | {"manifest.json"}
    for path in sorted(directory.rglob("*")):
        if path.is_file() and str(path.relative_to(directory)) not in listed:
            problems.append(f"{path}: not listed in the manifest")
    return problems


# Columns of the populations that are dated: none may fall after the pack's date (an event,
# an observation or an approval the pack could not have known), and every as_of column is it.
DATED_COLUMNS = {
    "gaps": ("first_seen_at",),
    "authorization_events": ("occurred_at",),
    "machines": ("last_assessed_at",),
    "exceptions": ("approved_at",),
}


def _utc(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    if not isinstance(value, datetime):
        value = datetime.combine(value, datetime.min.time())
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def verify_as_of(directory: Path, as_of: date) -> list[str]:
    """The figures belong to the pack's date: a relabelled pack of another date fails here."""
    end = datetime.combine(as_of + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    problems = []
    for path in sorted((directory / "populations").glob("*.csv")):
        with path.open(encoding="utf-8", newline="") as handle:
            for number, row in enumerate(csv.DictReader(handle), start=1):
                if row.get("as_of") not in (None, "", as_of.isoformat()):
                    problems.append(f"{path}: row {number}: as_of {row['as_of']} is not the pack's "
                                    f"date {as_of} (the figures are of another date)")
                    break
                late = [c for c in DATED_COLUMNS.get(path.stem, ()) if row.get(c) and _utc(row[c]) >= end]
                if late:
                    problems.append(f"{path}: row {number}: {late[0]} {row[late[0]]} is after the "
                                    f"pack's date {as_of}")
                    break
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
