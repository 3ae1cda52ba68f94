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
The code location builds these tables several to a step, one connection per step (`grouped`:
one subsettable multi-asset, as dagster-dbt builds models).

A build whose inputs did not change since its last build is skipped (pipelines/unchanged.py:
the fingerprint of the SQL, the bound values, the evaluation date when the SQL takes `$as_of`
and the versions of the tables the SQL reads); its metadata is read from the table as it stands
and says since which run it is unchanged. Its checks are evaluated again on it: cheap, and a
check result then always describes the table as it is.
"""

import graphlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import dagster as dg
import duckdb

from assets.common import DUCKDB_POOL, OWNERS, key, warehouse_asset
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


@dataclass(frozen=True)
class TableBuild:
    """How an asset builds its table on an open connection (its spec, checks, build), so that
    the code location can build it in one step with the others of its `family` (`grouped`)."""

    table: str
    spec: dg.AssetSpec
    build: Callable[..., dg.MaterializeResult]  # (context, conn, run_settings, run_config)
    checks: tuple[TableCheck, ...] = ()
    config: type[dg.Config] | None = None  # run config: such a table keeps a step of its own
    family: str = "sql_tables"  # the name of the multi-asset, so of its step(s)

    @property
    def key(self) -> dg.AssetKey:
        return self.spec.key


# The declarations by the id of their asset's op (kept, so that its id stays its own): loading a
# module copies the asset, not its op.
_DECLARED: dict[int, tuple[dg.OpDefinition, TableBuild]] = {}


def shares_steps(asset: dg.AssetsDefinition, build: TableBuild) -> dg.AssetsDefinition:
    """`asset` (which builds `build.table` in a step of its own), declared buildable with the
    others of its family in one step."""
    _DECLARED[id(asset.node_def)] = (asset.node_def, build)
    return asset


def declared(asset) -> TableBuild | None:
    """The declaration of an asset made by `shares_steps`, None for any other."""
    if not isinstance(asset, dg.AssetsDefinition) or not asset.is_executable:
        return None
    found = _DECLARED.get(id(asset.node_def))
    return found[1] if found is not None and found[0] is asset.node_def else None


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

    The asset returned builds the table in a step of its own; the code location builds it in
    one step with other tables (`grouped`), with the same key, spec and checks.
    """
    sql_name = _checked(table).split(".", 1)[1]
    header = sql_header(sql_name)
    if not header.group:
        raise ValueError(f"sql/{sql_name}.sql: its header has no '-- @group' line")
    takes_as_of = "as_of" in sql_parameters(sql_name)
    skips = before is None if skip_unchanged is None else skip_unchanged
    table_checks = (*unique_key_checks(table), *checks)

    def build(context: dg.AssetExecutionContext, conn: duckdb.DuckDBPyConnection, run_settings: RunSettings,
              run_config) -> dg.MaterializeResult:
        bound = dict(params(run_config) if callable(params) else params or {})
        with transaction(conn):
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
            check_results = [c.result(conn)._replace(asset_key=key(table)) for c in table_checks]
        if done is None:
            return dg.MaterializeResult(asset_key=key(table), metadata=result, check_results=check_results)
        return dg.MaterializeResult(asset_key=key(table), metadata={**result, **done.metadata()},
                                    data_version=done.data_version, check_results=check_results)

    spec = dg.AssetSpec(
        key=key(table),
        deps=[key(t) for t in header.depends],
        group_name=header.group,
        kinds={"duckdb", "sql"},
        description=header.summary or header.description,
        owners=OWNERS,
    )
    decorate = warehouse_asset(
        key=spec.key,
        deps=spec.deps,
        group_name=spec.group_name,
        kinds=spec.kinds,
        description=spec.description,
        check_specs=[c.spec(table) for c in table_checks] or None,
    )
    if config is None:
        def compute(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                    run_settings: RunSettings) -> dg.MaterializeResult:
            with warehouse.get_connection() as conn:
                return build(context, conn, run_settings, None)
    else:
        def compute(context: dg.AssetExecutionContext, config, warehouse: WarehouseResource,
                    run_settings: RunSettings) -> dg.MaterializeResult:
            with warehouse.get_connection() as conn:
                return build(context, conn, run_settings, config)
        # Dagster reads the run-config class from the parameter's annotation.
        compute.__annotations__["config"] = config
    compute.__name__ = sql_name
    return shares_steps(decorate(compute), TableBuild(table, spec, build, table_checks, config))


def grouped(assets: Sequence[dg.AssetsDefinition]) -> list[dg.AssetsDefinition]:
    """`assets` with the tables declared by `shares_steps` (but those that take run config, whose
    config stays the asset's own) replaced by one subsettable multi-asset per family that builds
    them in one step, on one connection, each in its own transaction, in dependency order, as
    dagster-dbt builds models. Each table keeps its key, spec and checks. Where a Python asset
    sits between two of them, Dagster runs the multi-asset in several steps, one per layer (the
    job builder subsets it so that no step waits for itself)."""
    families: dict[str, dict[dg.AssetKey, TableBuild]] = {}
    for build in map(declared, assets):
        if build is not None and build.config is None:
            families.setdefault(build.family, {})[build.key] = build
    families = {name: tables for name, tables in families.items() if len(tables) > 1}
    kept = [a for a in assets if declared(a) is None or declared(a).key not in
            {k for tables in families.values() for k in tables}]
    return [*(_multi_asset(name, tables) for name, tables in sorted(families.items())), *kept]


def _multi_asset(name: str, tables: dict[dg.AssetKey, TableBuild]) -> dg.AssetsDefinition:
    # Tables in dependency order among themselves (ties by name): a step builds its subset in it.
    inside = {k: {d.asset_key for d in t.spec.deps} & tables.keys() for k, t in tables.items()}
    order = [tables[k] for k in graphlib.TopologicalSorter(
        {k: sorted(inside[k], key=str) for k in sorted(inside, key=str)}).static_order()]
    check_specs = [c.spec(t.table) for t in order for c in t.checks]

    @dg.multi_asset(name=name, specs=[t.spec for t in order], check_specs=check_specs or None,
                    can_subset=True, pool=DUCKDB_POOL)
    def build_tables(context: dg.AssetExecutionContext, warehouse: WarehouseResource, run_settings: RunSettings):
        selected, selected_checks = context.selected_asset_keys, context.selected_asset_check_keys
        stopped: set[dg.AssetKey] = set()  # failed (its build or a blocking check), or reads one that did
        errors: list[Exception] = []
        with warehouse.get_connection() as conn:
            for table in order:
                if table.key not in selected:
                    continue
                if inside[table.key] & stopped:
                    context.log.warning(f"{table.table}: not built, a table it reads failed")
                    stopped.add(table.key)
                    continue
                try:
                    result = table.build(context, conn, run_settings, None)
                except Exception as error:  # rolled back; the tables that do not read it still build
                    context.log.error(f"{table.table}: not built: {error}")
                    errors.append(error)
                    stopped.add(table.key)
                    continue
                checks = [c for c in result.check_results
                          if dg.AssetCheckKey(table.key, c.check_name) in selected_checks]
                # Dagster fails the step at its end for a failed blocking check; what reads the
                # table in this step is not built meanwhile.
                blocking = {c.name for c in table.checks if c.blocking}
                if any(not c.passed and c.check_name in blocking for c in checks):
                    stopped.add(table.key)
                yield result._replace(check_results=checks)
        if errors:
            raise errors[0]  # the step fails as the table's own step did, with the same error

    return build_tables


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
