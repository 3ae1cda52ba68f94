"""Derived tables as Dagster assets, made from the header of their SQL file.

A derived table is one `sql/<table>.sql`; its header declares what the asset needs
(docs/architecture.md, "Extension points"):

    -- @table <the table's COMMENT>            -- @column <name>: <the column's COMMENT>
    -- @summary <the asset's description>      (optional; else the @table text)
    -- @group <Dagster asset group>
    -- @depends schema.table, schema.table     (repeatable)
    -- @unique <column>[, <column>] [as <check name>]: <description>

`sql_table_asset("marts.x")` turns it into the asset (pool, owners, kinds, group, description,
deps; the evaluation date resolved when the SQL takes `$as_of`; build, table metadata) and
`unique_checks("marts.x")` turns each `@unique` into a blocking asset check.
"""

from collections.abc import Callable, Mapping
from datetime import date
from typing import Any

import dagster as dg
import duckdb

from assets.common import key, warehouse_asset, warehouse_check
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


def sql_table_asset(
    table: str,
    *,
    params: Params | None = None,
    config: type[dg.Config] | None = None,
    metadata: MetadataFn | None = None,
    before: Callable[[duckdb.DuckDBPyConnection, RunSettings], None] | None = None,
    preview_rows: int = 5,
    order_by: str = "",
) -> dg.AssetsDefinition:
    """The asset that (re)builds `table` ('schema.name') from `sql/<name>.sql` in one transaction.

    `params`, `config`, `metadata` and `before` (run first in the same transaction, e.g. to
    load a helper table) are the extension points; everything else comes from the header.
    """
    sql_name = _checked(table).split(".", 1)[1]
    header = sql_header(sql_name)
    if not header.group:
        raise ValueError(f"sql/{sql_name}.sql: its header has no '-- @group' line")
    takes_as_of = "as_of" in sql_parameters(sql_name)

    def build(warehouse: WarehouseResource, run_settings: RunSettings, run_config) -> dg.MaterializeResult:
        bound = dict(params(run_config) if callable(params) else params or {})
        with warehouse.get_connection() as conn, transaction(conn):
            if before is not None:
                before(conn, run_settings)
            as_of = resolve_as_of(conn, run_settings.as_of_date()) if takes_as_of else None
            if as_of is not None:
                bound["as_of"] = as_of
            build_table(conn, table, sql_name, bound)
            result = dict(table_metadata(conn, table, preview_rows=preview_rows, order_by=order_by))
            if as_of is not None:
                result["as_of"] = as_of.isoformat()
            if metadata is not None:
                result.update(metadata(conn, as_of))
        return dg.MaterializeResult(metadata=result)

    decorate = warehouse_asset(
        key=key(table),
        deps=[key(t) for t in header.depends],
        group_name=header.group,
        kinds={"duckdb", "sql"},
        description=header.summary or header.description,
    )
    if config is None:
        def compute(warehouse: WarehouseResource, run_settings: RunSettings) -> dg.MaterializeResult:
            return build(warehouse, run_settings, None)
    else:
        def compute(config, warehouse: WarehouseResource, run_settings: RunSettings) -> dg.MaterializeResult:
            return build(warehouse, run_settings, config)
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


def unique_checks(table: str) -> list[dg.AssetChecksDefinition]:
    """One blocking check per `@unique` line of the table's SQL header: downstream assets do not
    run on a table whose key is missing from a row or names two rows."""
    sql_name = _checked(table).split(".", 1)[1]
    return [_unique_check(table, u.columns, u.check_name, u.description)
            for u in sql_header(sql_name).unique]


def _unique_check(table: str, columns: tuple[str, ...], name: str, description: str) -> dg.AssetChecksDefinition:
    # Identifiers only (checked by sql_header and _checked): no value enters this SQL.
    listed = ", ".join(f'"{c}"' for c in columns)
    duplicates_sql = (f"SELECT {listed}, count(*) AS n FROM {_checked(table)} "
                      f"GROUP BY ALL HAVING count(*) > 1 ORDER BY n DESC, {listed}")
    nulls_sql = (f"SELECT count(*) FROM {_checked(table)} WHERE "
                 + " OR ".join(f'"{c}" IS NULL' for c in columns))

    @warehouse_check(asset=key(table), name=name, blocking=True,
                     description=description or f"({', '.join(columns)}) names one row of {table}.")
    def _check(warehouse: WarehouseResource) -> dg.AssetCheckResult:
        with warehouse.get_connection() as conn:
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

    return _check
