"""The ledger as append-only files beside the estate (`<ledger dir>/<register>.jsonl`)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC
from pathlib import Path

import duckdb
import pandas as pd

from .chain import _LEDGER_COLUMNS, _OPTIONAL_COLUMNS, GENESIS, _typed, chain_hash, ensure_ledger


# The ledger as files: one JSON line per ledger row (every column), append-only, so that the
# first-recorded register rows outlive the warehouse. A warehouse without a ledger restores it
# from the files (chain verified first); a warehouse ahead of the files writes the missing lines.
def ledger_file(directory: Path, register: str) -> Path:
    return Path(directory) / f"{register}.jsonl"


class LedgerFileError(ValueError):
    """A ledger file that is not an extension of (or extended by) the warehouse's ledger."""


def _read_ledger_file(path: Path) -> list[dict]:
    rows = []
    if not path.exists():
        return rows
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                row = json.loads(line)
                missing = [c for c in _LEDGER_COLUMNS if c not in row and c not in _OPTIONAL_COLUMNS]
            except ValueError as exc:
                raise LedgerFileError(f"{path}: line {number}: not JSON ({exc})") from None
            if missing:
                raise LedgerFileError(f"{path}: line {number}: field {missing[0]} missing")
            rows.append({c: None for c in _OPTIONAL_COLUMNS} | row)
    return rows


def _check_file_chain(path: Path, rows: list[dict]) -> None:
    """The file's rows chain from the genesis: each hash recomputes and each link holds."""
    prev = GENESIS
    for number, row in enumerate(rows, start=1):
        for field, ok in (
            ("seq", row["seq"] == number),
            ("row_sha256", hashlib.sha256(row["content"].encode("utf-8")).hexdigest() == row["row_sha256"]),
            ("prev_sha256", row["prev_sha256"] == prev),
            ("chain_sha256", chain_hash(row["prev_sha256"], row["row_sha256"]) == row["chain_sha256"]),
        ):
            if not ok:
                raise LedgerFileError(
                    f"{path}: line {number}: field {field} does not verify (row {row['row_id']}): "
                    "the ledger file was altered"
                )
        prev = row["chain_sha256"]


def sync_ledger_files(conn: duckdb.DuckDBPyConnection, register: str, directory: Path,
                      run_id: str) -> int:
    """Make the warehouse's ledger and its file hold the same chain; returns rows restored.

    The longer of the two must extend the shorter row for row. Rows only in the file are
    restored into the warehouse (a lost or rebuilt warehouse); rows only in the warehouse are
    appended to the file. Anything else is an error naming the file, the line and the field.
    Call inside `transaction(conn)` before `append_register`.
    """
    ensure_ledger(conn)
    path = ledger_file(directory, register)
    in_file = _read_ledger_file(path)
    _check_file_chain(path, in_file)
    columns = list(_LEDGER_COLUMNS)
    in_warehouse = [
        dict(zip(columns, r, strict=True))
        for r in conn.execute(f"SELECT {', '.join(columns)} FROM ledger.{register} ORDER BY seq").fetchall()
    ]
    for number, (a, b) in enumerate(zip(in_file, in_warehouse, strict=False), start=1):
        for column in ("row_id", "content", "chain_sha256"):
            if a[column] != b[column]:
                raise LedgerFileError(
                    f"{path}: line {number}: field {column} differs from ledger.{register} seq "
                    f"{b['seq']}: the file and the warehouse hold different chains"
                )
    restored = in_file[len(in_warehouse):]
    if restored:
        conn.from_df(_typed(pd.DataFrame(restored, columns=columns))).insert_into(f"ledger.{register}")
        head = restored[-1]
        conn.execute(
            "INSERT INTO ledger.chain_heads VALUES ($register, $seq, $chain, $run_id)",
            {"register": register, "seq": head["seq"], "chain": head["chain_sha256"], "run_id": run_id},
        )
    return len(restored)


def append_ledger_file(conn: duckdb.DuckDBPyConnection, register: str, directory: Path) -> int:
    """Append to the file the warehouse's ledger rows it does not hold yet; returns lines written."""
    path = ledger_file(directory, register)
    held = len(_read_ledger_file(path))
    columns = list(_LEDGER_COLUMNS)
    rows = conn.execute(
        f"SELECT {', '.join(columns)} FROM ledger.{register} WHERE seq > ? ORDER BY seq", [held]
    ).fetchall()
    if rows:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as handle:
            for row in rows:
                line = dict(zip(columns, row, strict=True))
                if line["arrived_at"] is not None:
                    line["arrived_at"] = line["arrived_at"].astimezone(UTC).isoformat()
                handle.write(json.dumps(line, sort_keys=True) + "\n")
    return len(rows)
