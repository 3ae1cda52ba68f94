"""The read-only copy of the warehouse that analysts open (pipelines.publish)."""

from pathlib import Path

import dagster as dg

from assets.common import PUBLICATION, key, warehouse_asset
from pipelines import settings
from pipelines.publish import publish_warehouse
from pipelines.raw_comments import comment_all_raw
from pipelines.resources import WarehouseResource
from pipelines.warehouse import transaction

PUBLISHED = key("published.warehouse")


def published_warehouse(tables: list[dg.AssetKey]) -> dg.AssetsDefinition:
    """The asset after every table: it runs only when the run's tables all succeeded, so the
    copy is always a complete, consistent state."""

    @warehouse_asset(key=PUBLISHED, group_name=PUBLICATION, kinds={"duckdb"}, deps=tables)
    def published(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
        """A read-only snapshot of the warehouse for notebooks and analysts
        (`<warehouse>-read.duckdb`), replaced atomically after each successful run: a reader
        never blocks a run, and sees one run's complete state."""
        target = settings.published_path(Path(warehouse.database))
        with warehouse.get_connection() as conn:
            with transaction(conn):
                comment_all_raw(conn)  # loaders that rewrite raw tables drop their comments
            how = publish_warehouse(conn, Path(warehouse.database), target)
        return dg.MaterializeResult(metadata={
            "path": dg.MetadataValue.path(str(target)), "bytes": target.stat().st_size,
            "bytes_written": dg.MetadataValue.int(how["bytes_written"]), "mode": how["mode"],
        })

    return published
