"""The organisation's registers (`<estate>/registers/*.csv`, schemas in docs/estate.md).

Each CSV is read as text, validated in one set-based DuckDB query against the schema below, and
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
"""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pandas as pd

from pipelines.warehouse import build_table, replace_table

STATES = ("proposed", "in_test", "authorized", "deferred", "rejected", "revoked", "expired")
ENVIRONMENTS = ("production", "staging", "test", "dev")


@dataclass(frozen=True)
class Column:
    name: str
    kind: str = "text"  # text, enum, timestamp, date, integer, number, boolean, time, list
    required: bool = False
    allowed: tuple[str, ...] = ()  # enum values, compared case-insensitively
    unique: bool = False
    minimum: float | None = None
    maximum: float | None = None


@dataclass(frozen=True)
class Register:
    name: str
    id_column: str
    columns: tuple[Column, ...]

    @property
    def file(self) -> str:
        return f"registers/{self.name}.csv"

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]


def _id(name: str) -> Column:
    return Column(name, required=True, unique=True)


def _enum(name: str, *allowed: str, required: bool = False) -> Column:
    return Column(name, "enum", required=required, allowed=allowed)


REGISTERS: dict[str, Register] = {
    r.name: r
    for r in (
        Register(
            "asset_categories",
            "category_id",
            (
                _id("category_id"),
                Column("name"),
                Column("description"),
                _enum("criticality", "critical", "high", "medium", "low", required=True),
                Column("rule_order", "integer"),
                Column("tag_key"),
                Column("tag_value"),
                _enum("os_type", "windows", "linux"),
            ),
        ),
        Register(
            "baselines",
            "baseline_id",
            (
                Column("baseline_id", required=True),
                Column("category_id", required=True),
                _enum("requirement", "os_build", "patch", "software", required=True),
                Column("item", required=True),
                Column("min_version"),
                Column("effective_from", "date"),
            ),
        ),
        Register(
            "patch_tests",
            "test_id",
            (
                _id("test_id"),
                Column("patch_key", required=True),
                Column("asset_category", required=True),
                _enum("environment", "test", "staging", required=True),
                Column("hosts", "list"),
                Column("started_at", "timestamp"),
                Column("ended_at", "timestamp"),
                _enum("result", "passed", "failed", "aborted", required=True),
                Column("failure_reason"),
                Column("incident_ids", "list"),
                Column("tester", required=True),
            ),
        ),
        Register(
            "authorization_events",
            "event_id",
            (
                _id("event_id"),
                Column("patch_key", required=True),
                Column("asset_category", required=True),
                _enum("environment", *ENVIRONMENTS, "*", required=True),
                _enum("from_state", *STATES),
                _enum("to_state", *STATES, required=True),
                Column("actor", required=True),
                _enum("actor_role", "requester", "tester", "approver", "cab", required=True),
                Column("occurred_at", "timestamp", required=True),
                Column("justification"),
                Column("impact_downtime_minutes", "integer", minimum=0),
                _enum("impact_reboot", "yes", "no", "maybe"),
                Column("impact_dependencies", "list"),
                Column("deploy_order", "integer"),
                Column("change_ticket"),
                Column("emergency", "boolean"),
                Column("pir_completed_at", "timestamp"),
                Column("expires_at", "timestamp"),
            ),
        ),
        Register(
            "exceptions",
            "exception_id",
            (
                _id("exception_id"),
                Column("vm_id"),
                Column("asset_category", required=True),
                Column("patch_key"),
                Column("cve"),
                Column("reason", required=True),
                Column("compensating_control"),
                Column("risk_owner"),
                Column("requested_by", required=True),
                Column("approver"),
                Column("approved_at", "timestamp"),
                Column("expires_at", "timestamp"),
                _enum("status", "active", "revoked", required=True),
            ),
        ),
        Register(
            "support_incidents",
            "incident_id",
            (
                _id("incident_id"),
                _enum("source", "vendor", "pss", "internal", required=True),
                Column("external_case_id"),
                Column("patch_key"),
                Column("vm_id"),
                Column("opened_at", "timestamp", required=True),
                Column("closed_at", "timestamp"),
                Column("severity"),
                Column("summary"),
            ),
        ),
        Register(
            "rollbacks",
            "rollback_id",
            (
                _id("rollback_id"),
                Column("vm_id", required=True),
                Column("patch_key", required=True),
                Column("rolled_back_at", "timestamp", required=True),
                Column("reason"),
                Column("incident_id"),
                Column("actor"),
            ),
        ),
        Register(
            "maintenance_windows",
            "window_id",
            (
                _id("window_id"),
                Column("name"),
                Column("rrule", required=True),
                Column("start_time", "time", required=True),
                Column("duration_minutes", "integer", required=True, minimum=1),
                Column("time_zone", required=True),
                Column("ring", "integer", required=True, minimum=0, maximum=3),
                Column("environment"),
                Column("capacity_vms", "integer", minimum=0),
                Column("max_role_share", "number", minimum=0, maximum=1),
            ),
        ),
        Register(
            "blackout_dates",
            "blackout_id",
            (
                _id("blackout_id"),
                Column("starts_on", "date", required=True),
                Column("ends_on", "date", required=True),
                Column("environment"),
                Column("reason"),
            ),
        ),
    )
}

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
    digest = hashlib.sha256(data).hexdigest()
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
