"""The SQL lint's configuration (.sqlfluff, .sqlfluffignore): it parses our `$name` parameters,
finds the mistakes it is there for, and skips only files that exist, each for a stated reason.
(`make lint` runs it over sql/.)"""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def linter():
    from sqlfluff.core import FluffConfig, Linter

    return Linter(config=FluffConfig.from_path(str(REPO)))


def _codes(linter, sql: str) -> list[tuple[str, int]]:
    return [(v.rule_code(), v.line_no) for v in linter.lint_string(sql, fname="sql/planted.sql").get_violations()]


def test_parameters_and_duckdb_syntax_lint_clean(linter):
    sql = (
        "-- @table planted\n"
        "SELECT vm_id, list_transform(parts, lambda x: CAST(x AS BIGINT)) AS numbers\n"
        "FROM marts.vm_inventory\n"
        "WHERE last_assessed_at::DATE <= CAST($as_of AS DATE)\n"
        "QUALIFY row_number() OVER (PARTITION BY vm_id ORDER BY last_assessed_at DESC) = 1\n"
    )
    assert _codes(linter, sql) == []


def test_planted_mistakes_are_found(linter):
    sql = (
        "WITH unused AS (SELECT 1 AS a),\n"          # ST03: a CTE nothing reads
        "gaps AS (SELECT gap_id, vm_id FROM marts.compliance_gaps)\n"
        "SELECT g.gap_id, g.vm_id AS gap_id\n"       # AL08: the same output name twice
        "FROM gaps AS g\n"
        "WHERE g.gap_id = NULL\n"                    # CV05: never true
    )
    assert sorted(_codes(linter, sql)) == [("AL08", 3), ("CV05", 5), ("ST03", 1)]


def test_every_ignored_file_exists_and_has_a_reason():
    lines = (REPO / ".sqlfluffignore").read_text().splitlines()
    paths = [line for line in lines if line.strip() and not line.startswith("#")]
    assert paths, "nothing ignored: drop the file"
    for path in paths:
        assert (REPO / path).is_file(), path
    # Each group of paths follows a comment saying why.
    for index, line in enumerate(lines):
        if line in paths and (index == 0 or not lines[index - 1].strip()):
            pytest.fail(f"{line}: no reason above it")
