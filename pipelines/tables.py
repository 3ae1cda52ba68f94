"""Derived tables as Dagster assets, made from the header of their SQL file.

A derived table is one `sql/<table>.sql`; its header declares what the asset needs
(docs/architecture.md, "Extension points"):

    -- @table <the table's COMMENT>            -- @column <name>: <the column's COMMENT>
    -- @summary <the asset's description>      (optional; else the @table text)
    -- @group <Dagster asset group>
    -- @depends schema.table, schema.table     (repeatable)
    -- @unique <column>[, <column>] [as <check name>]: <description>

`sql_table_asset("marts.x")` turns it into the asset (pool, owners, kinds, group, description,
deps; the evaluation date resolved when the SQL takes `$as_of`; build, table metadata), each
`@unique` into a blocking asset check evaluated in the same step, on the same connection.

A build whose inputs did not change since its last build is skipped (pipelines/unchanged.py:
the fingerprint of the SQL, the bound values, the evaluation date when the SQL takes `$as_of`
and the versions of the tables the SQL reads); its metadata is read from the table as it stands
and says since which run it is unchanged. Its checks are evaluated again on it: cheap, and a
check result then always describes the table as it is.
"""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import dagster as dg
import duckdb

from assets.common import key, warehouse_asset
from pipelines import unchanged
from pipelines.resources import RunSettings, WarehouseResource
from pipelines.warehouse import (
    _IDENTIFIER,
    _checked,
    build_table,
    resolve_as_of,
    sql_header,
    sql_parameters,
    table_metadata,
    transaction,
)

# Extra metadata of a table beside the standard one: (connection, evaluation date or None) -> dict.
MetadataFn = Callable[[duckdb.DuckDBPyConnection, date | None], Mapping[str, Any]]
# Parameters other than $as_of: constants, or a function of the asset's run config.
Params = Mapping[str, Any] | Callable[[Any], Mapping[str, Any]]


@dataclass(frozen=True)
class TableCheck:
    """An asset check of a table, evaluated in the table's own step on its connection, after the
    build (no step, no connection of its own). `evaluate` returns the result without a name."""

    name: str
    evaluate: Callable[[duckdb.DuckDBPyConnection], dg.AssetCheckResult]
    blocking: bool = False
    description: str | None = None

    def spec(self, table: str) -> dg.AssetCheckSpec:
        return dg.AssetCheckSpec(self.name, asset=key(table), blocking=self.blocking, description=self.description)

    def result(self, conn: duckdb.DuckDBPyConnection) -> dg.AssetCheckResult:
        return self.evaluate(conn)._replace(check_name=self.name)


def sql_table_asset(
    table: str,
    *,
    params: Params | None = None,
    config: type[dg.Config] | None = None,
    metadata: MetadataFn | None = None,
    before: Callable[[duckdb.DuckDBPyConnection, RunSettings], None] | None = None,
    skip_unchanged: bool | None = None,
    checks: Sequence[TableCheck] = (),
    preview_rows: int = 5,
    order_by: str = "",
) -> dg.AssetsDefinition:
    """The asset that (re)builds `table` ('schema.name') from `sql/<name>.sql` in one transaction.

    `params`, `config`, `metadata`, `before` (run first in the same transaction, e.g. to load a
    helper table) and `checks` (beside the header's @unique ones) are the extension points;
    everything else comes from the header. The build is skipped when its inputs are unchanged
    (module docstring), unless `skip_unchanged` is False; it is False by default when there is a
    `before`, whose reads (files, settings, temporary tables) the fingerprint does not see: pass
    True for a `before` that reads nothing.
    """
    sql_name = _checked(table).split(".", 1)[1]
    header = sql_header(sql_name)
    if not header.group:
        raise ValueError(f"sql/{sql_name}.sql: its header has no '-- @group' line")
    takes_as_of = "as_of" in sql_parameters(sql_name)
    skips = before is None if skip_unchanged is None else skip_unchanged
    table_checks = [*unique_key_checks(table), *checks]

    def build(context: dg.AssetExecutionContext, warehouse: WarehouseResource, run_settings: RunSettings,
              run_config) -> dg.MaterializeResult:
        bound = dict(params(run_config) if callable(params) else params or {})
        with warehouse.get_connection() as conn, transaction(conn):
            if before is not None:
                before(conn, run_settings)
            as_of = resolve_as_of(conn, run_settings.as_of_date()) if takes_as_of else None
            if as_of is not None:
                bound["as_of"] = as_of
            done = unchanged.prepare(conn, context, [table], [sql_name], sorted(bound.items())) if skips else None
            if done is None or not done.unchanged:
                build_table(conn, table, sql_name, bound)
            result = dict(table_metadata(conn, table, preview_rows=preview_rows, order_by=order_by))
            if as_of is not None:
                result["as_of"] = as_of.isoformat()
            if metadata is not None:
                result.update(metadata(conn, as_of))
            check_results = [c.result(conn) for c in table_checks]
        if done is None:
            return dg.MaterializeResult(metadata=result, check_results=check_results)
        return dg.MaterializeResult(metadata={**result, **done.metadata()}, data_version=done.data_version,
                                    check_results=check_results)

    decorate = warehouse_asset(
        key=key(table),
        deps=[key(t) for t in header.depends],
        group_name=header.group,
        kinds={"duckdb", "sql"},
        description=header.summary or header.description,
        check_specs=[c.spec(table) for c in table_checks] or None,
    )
    if config is None:
        def compute(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                    run_settings: RunSettings) -> dg.MaterializeResult:
            return build(context, warehouse, run_settings, None)
    else:
        def compute(context: dg.AssetExecutionContext, config, warehouse: WarehouseResource,
                    run_settings: RunSettings) -> dg.MaterializeResult:
            return build(context, warehouse, run_settings, config)
        # Dagster reads the run-config class from the parameter's annotation.
        compute.__annotations__["config"] = config
    compute.__name__ = sql_name
    return decorate(compute)


def count_by(table: str, column: str, name: str) -> MetadataFn:
    """Metadata `name`: the rows of `table` per value of `column` (a JSON object)."""
    if not _IDENTIFIER.match(column):
        raise ValueError(f"not a column name: {column!r}")
    query = f"SELECT {column}, count(*) FROM {_checked(table)} GROUP BY ALL ORDER BY ALL"

    def metadata(conn: duckdb.DuckDBPyConnection, as_of: date | None) -> dict:
        return {name: dg.MetadataValue.json(dict(conn.execute(query).fetchall()))}

    return metadata


def unique_key_checks(table: str) -> list[TableCheck]:
    """One blocking check per `@unique` line of the table's SQL header: downstream assets do not
    run on a table whose key is missing from a row or names two rows. A factory-made asset has
    them already; another asset of a SQL table adds `check_specs=unique_check_specs(table)` and
    returns `check_results=unique_check_results(conn, table)`."""
    sql_name = _checked(table).split(".", 1)[1]
    return [_unique_check(table, u.columns, u.check_name, u.description)
            for u in sql_header(sql_name).unique]


def unique_check_specs(table: str) -> list[dg.AssetCheckSpec]:
    return [c.spec(table) for c in unique_key_checks(table)]


def unique_check_results(conn: duckdb.DuckDBPyConnection, table: str) -> list[dg.AssetCheckResult]:
    return [c.result(conn) for c in unique_key_checks(table)]


def _unique_check(table: str, columns: tuple[str, ...], name: str, description: str) -> TableCheck:
    # Identifiers only (checked by sql_header and _checked): no value enters this SQL.
    listed = ", ".join(f'"{c}"' for c in columns)
    duplicates_sql = (f"SELECT {listed}, count(*) AS n FROM {_checked(table)} "
                      f"GROUP BY ALL HAVING count(*) > 1 ORDER BY n DESC, {listed}")
    nulls_sql = (f"SELECT count(*) FROM {_checked(table)} WHERE "
                 + " OR ".join(f'"{c}" IS NULL' for c in columns))

    def evaluate(conn: duckdb.DuckDBPyConnection) -> dg.AssetCheckResult:
        duplicates = conn.execute(duplicates_sql).fetchall()
        nulls = conn.execute(nulls_sql).fetchone()[0]
        return dg.AssetCheckResult(
            passed=not duplicates and nulls == 0,
            metadata={
                "duplicate_ids": dg.MetadataValue.int(len(duplicates)),
                "first_duplicates": dg.MetadataValue.md(
                    "\n".join(f"- {', '.join(map(str, row[:-1]))}: {row[-1]} rows" for row in duplicates[:20])
                    or "_none_"
                ),
                # A row without its key cannot be referred to by it.
                "null_keys": dg.MetadataValue.int(nulls),
            },
        )

    return TableCheck(name, evaluate, blocking=True,
                      description=description or f"({', '.join(columns)}) names one row of {table}.")
