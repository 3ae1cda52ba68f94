"""The tamper-evident ledger of the authorization registers.

`ledger.authorization_events`, `ledger.patch_tests` and `ledger.exceptions` are append-only: a
register row gets one ledger row the first time it is seen, holding its canonical content (a JSON
object of the row exactly as received, keys sorted), `row_sha256 = sha256(content)`,
`prev_sha256` (the previous row's chain hash, 64 zeros for the first) and
`chain_sha256 = sha256(prev_sha256 || row_sha256)` (hex strings concatenated).
Ledger rows are never updated or deleted. Each append also records the chain head in
`ledger.chain_heads`, so that removing the newest ledger rows is detected too.

A later run that finds a row changed (same id, other content), removed, reordered, or a new row
inserted before rows already recorded, records it in `ledger.tamper_findings` (with each field's
recorded and new value) and keeps the original row. The registers' staging tables are then
rebuilt from the first-recorded rows (`rebuild_first_recorded`), so the controls are judged on
what was first recorded and an edit cannot hide a finding.

The chains are also kept as append-only files (`<ledger dir>/<register>.jsonl`, one JSON line per
row) outside the warehouse: `sync_ledger_files` restores a lost warehouse's ledger from them and
`append_ledger_file` writes the rows they lack.

`verify_ledger(conn)` recomputes every chain and returns the problems (`patchledger verify`).
Recomputing every hash in the warehouse defeats the chain; the chain heads copied into each
evidence manifest are the external anchor against that.
"""

from .chain import (
    GENESIS,
    LEDGER_REGISTERS,
    LedgerProblem,
    chain_hash,
    comment_ledger,
    ensure_ledger,
    verify_ledger,
)
from .files import LedgerFileError, append_ledger_file, ledger_file, sync_ledger_files
from .registers import AppendResult, append_register, rebuild_first_recorded

__all__ = [
    "GENESIS",
    "LEDGER_REGISTERS",
    "AppendResult",
    "LedgerFileError",
    "LedgerProblem",
    "append_ledger_file",
    "append_register",
    "chain_hash",
    "comment_ledger",
    "ensure_ledger",
    "ledger_file",
    "rebuild_first_recorded",
    "sync_ledger_files",
    "verify_ledger",
]
