"""Offline loader of the registers (`<estate>/registers/*.csv`, schemas in docs/estate.md).

Each CSV is read as text, validated in one set-based DuckDB query against its schema (REGISTERS), and
written as received to `raw.register_<name>` (plus `_row`, `source_file`, `source_sha256`,
`ingest_run`); `sql/register_<name>.sql` then normalizes it into `staging.<name>`.

A problem names the file, the row (1 = first data row; `header` for the header) and the field,
and every problem of the file is reported at once. A missing file is an empty register.

Bad input (tests/test_bad_inputs.py): registers are the organisation's own records, few and
hand-kept, so nothing is quarantined: any problem fails the load (the asset's transaction keeps
the last good state) and names file, row and field: not UTF-8 (the byte offset and row of the
first bad byte), an empty file (no header), a missing, unexpected or repeated column, a ragged
row, an empty required cell, a duplicate id, a value outside the column's vocabulary, type or
range. Legal oddities load: timestamps with any offset (stored as the UTC instant), text of any
length or content (HTML, formulas such as =HYPERLINK(...)) kept verbatim.

Why not the file plan of pipelines/ingest/: a register is validated whole (every problem of the
file reported at once, duplicate ids across the file) and then replaces its table; its history
is the hash-chained ledger, not an accumulating raw table.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pandas as pd

from pipelines.ingest.files import sha256_bytes
from pipelines.warehouse import build_table, replace_table

from . import REGISTERS, Register

# One set-based pass over every cell: the register is unpivoted to (row, field, value) and joined
# to its schema. Identifiers never come from the file, so the text is constant.
_VALIDATE = r"""
WITH cells AS (
    UNPIVOT _register_rows ON COLUMNS(* EXCLUDE (_row)) INTO NAME field VALUE value
), checked AS (
    SELECT c._row, c.field, c.value, nullif(trim(c.value), '') AS v, s.*,
           row_number() OVER (PARTITION BY c.field, nullif(trim(c.value), '') ORDER BY c._row)
               AS occurrence
    FROM cells AS c JOIN _register_spec AS s USING (field)
), judged AS (
    SELECT _row, field, value, CASE
        WHEN v IS NULL THEN CASE WHEN required THEN 'a value is required' END
        WHEN is_unique AND occurrence > 1 THEN 'duplicate id (already used on an earlier row)'
        WHEN kind = 'enum' AND NOT list_contains(allowed, lower(v))
            THEN 'must be one of ' || array_to_string(allowed, '/')
        WHEN kind = 'timestamp' AND TRY_CAST(v AS TIMESTAMPTZ) IS NULL
            THEN 'not an ISO 8601 timestamp'
        WHEN kind = 'date' AND (NOT regexp_full_match(v, '\d{4}-\d{2}-\d{2}')
                                OR TRY_CAST(v AS DATE) IS NULL)
            THEN 'not a date YYYY-MM-DD'
        WHEN kind = 'integer' AND NOT regexp_full_match(v, '[+-]?\d+') THEN 'not an integer'
        WHEN kind = 'number' AND TRY_CAST(v AS DOUBLE) IS NULL THEN 'not a number'
        WHEN kind = 'boolean' AND lower(v) NOT IN ('true', 'false') THEN 'must be true or false'
        WHEN kind = 'time' AND NOT regexp_full_match(v, '([01]\d|2[0-3]):[0-5]\d')
            THEN 'not a time HH:MM'
        WHEN kind IN ('integer', 'number') AND TRY_CAST(v AS DOUBLE) < minimum
            THEN 'must be at least ' || minimum
        WHEN kind IN ('integer', 'number') AND TRY_CAST(v AS DOUBLE) > maximum
            THEN 'must be at most ' || maximum
    END AS problem
    FROM checked
)
SELECT _row, field, value, problem FROM judged WHERE problem IS NOT NULL
ORDER BY _row, field
"""


@dataclass(frozen=True)
class RegisterProblem:
    file: str
    row: int | None  # None = the header or the whole file
    field: str | None
    message: str

    def __str__(self) -> str:
        where = "header" if self.row is None else f"row {self.row}"
        field_part = f", field {self.field}" if self.field else ""
        return f"{self.file}: {where}{field_part}: {self.message}"


class RegisterValidationError(ValueError):
    """A register file does not follow its schema; `problems` lists every one found."""

    def __init__(self, problems: list[RegisterProblem]):
        self.problems = problems
        shown = "\n  ".join(str(p) for p in problems[:50])
        more = f"\n  ... and {len(problems) - 50} more" if len(problems) > 50 else ""
        super().__init__(f"{len(problems)} problem(s) in the registers:\n  {shown}{more}")


@dataclass
class LoadResult:
    register: str
    source_file: str
    found: bool
    rows: int = 0
    source_sha256: str | None = None
    warnings: list[str] = field(default_factory=list)


# Longest cell read (Python's csv default, 128 KiB, would reject a legal long justification).
MAX_FIELD_SIZE = 64 * 2**20


def read_register(path: Path, register: Register) -> tuple[pd.DataFrame, str]:
    """The file's rows as text (empty cells as ''), with `_row`, and the file's SHA-256."""
    data = path.read_bytes()
    digest = sha256_bytes(data)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        # The line of the bad byte: line 1 is the header, line n + 1 data row n (no multi-line
        # cells before it assumed).
        line = data.count(b"\n", 0, exc.start) + 1
        raise RegisterValidationError(
            [
                RegisterProblem(
                    register.file,
                    line - 1 if line > 1 else None,
                    None,
                    f"not UTF-8 ({exc.reason}: byte 0x{data[exc.start]:02x} at byte offset "
                    f"{exc.start})",
                )
            ]
        ) from exc
    previous_limit = csv.field_size_limit(MAX_FIELD_SIZE)
    try:
        records = [r for r in csv.reader(io.StringIO(text, newline="")) if r]
    except csv.Error as exc:
        raise RegisterValidationError(
            [RegisterProblem(register.file, None, None, f"not valid CSV: {exc}")]
        ) from exc
    finally:
        csv.field_size_limit(previous_limit)
    if not records:
        raise RegisterValidationError(
            [RegisterProblem(register.file, None, None, "empty file (no header row)")]
        )
    header = [h.strip() for h in records[0]]
    _check_header(register, header)
    width = len(header)
    problems = [
        RegisterProblem(register.file, n, None, f"has {len(r)} fields, the header has {width}")
        for n, r in enumerate(records[1:], start=1)
        if len(r) != width
    ]
    if problems:
        raise RegisterValidationError(problems)
    frame = pd.DataFrame(records[1:], columns=header, dtype=str)[register.column_names]
    frame.insert(0, "_row", pd.Series(range(1, len(frame) + 1), dtype="int64"))
    return frame, digest


def _check_header(register: Register, header: list[str]) -> None:
    expected = register.column_names
    problems = [
        RegisterProblem(register.file, None, name, "column missing from the header")
        for name in expected
        if name not in header
    ]
    problems += [
        RegisterProblem(register.file, None, name, "unexpected column (see docs/estate.md)")
        for name in header
        if name not in expected
    ]
    problems += [
        RegisterProblem(register.file, None, name, "column appears more than once")
        for name in sorted({h for h in header if header.count(h) > 1})
    ]
    if problems:
        raise RegisterValidationError(problems)


def validate(conn: duckdb.DuckDBPyConnection, register: Register, frame: pd.DataFrame) -> None:
    """Raise RegisterValidationError listing every bad cell of `frame`."""
    spec = pd.DataFrame(
        {
            "field": [c.name for c in register.columns],
            "kind": [c.kind for c in register.columns],
            "required": [c.required for c in register.columns],
            "allowed": [[a.lower() for a in c.allowed] for c in register.columns],
            "is_unique": [c.unique for c in register.columns],
            "minimum": [c.minimum for c in register.columns],
            "maximum": [c.maximum for c in register.columns],
        }
    )
    conn.register("_register_rows", frame)
    conn.register("_register_spec", spec)
    try:
        bad = conn.execute(_VALIDATE).fetchall()
    finally:
        conn.unregister("_register_rows")
        conn.unregister("_register_spec")
    if bad:
        raise RegisterValidationError(
            [
                RegisterProblem(register.file, row, column, f"{value!r}: {problem}")
                for row, column, value, problem in bad
            ]
        )


def empty_frame(register: Register) -> pd.DataFrame:
    frame = pd.DataFrame({name: pd.Series([], dtype=str) for name in register.column_names})
    frame.insert(0, "_row", pd.Series([], dtype="int64"))
    return frame


def load_register(
    conn: duckdb.DuckDBPyConnection, estate_dir: str | Path, name: str, ingest_run: str
) -> LoadResult:
    """Validate one register and (re)write `raw.register_<name>` and `staging.<name>`.

    Call inside `transaction(conn)`: a bad file raises before anything is written.
    """
    register = REGISTERS[name]
    path = Path(estate_dir) / register.file
    result = LoadResult(register=name, source_file=register.file, found=path.is_file())
    if result.found:
        frame, result.source_sha256 = read_register(path, register)
        validate(conn, register, frame)
    else:
        frame = empty_frame(register)
        result.warnings.append(f"{register.file} not found in the estate: staging.{name} is empty")
    frame["source_file"] = pd.Series([register.file] * len(frame), dtype=str)
    frame["source_sha256"] = pd.Series([result.source_sha256 or ""] * len(frame), dtype=str)
    frame["ingest_run"] = pd.Series([ingest_run] * len(frame), dtype=str)
    replace_table(conn, f"raw.register_{name}", frame)
    result.rows = build_table(conn, f"staging.{name}", f"register_{name}")
    return result
