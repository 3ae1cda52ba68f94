"""A job that step subprocesses can rebuild from this file (multiprocess execution needs a
reconstructable job): raw scan ingestion, identity and observations, from the project's own
definitions. Used by test_lake_multiprocess.py."""

import dagster as dg

from pipelines.definitions import defs

TARGETS = ("staging.patch_observations", "staging.vm_identity")


def ingest_and_observations() -> dg.JobDefinition:
    keys = [dg.AssetKey(t.split(".")) for t in TARGETS]
    job = dg.define_asset_job(
        "ingest_and_observations",
        selection=dg.AssetSelection.assets(*keys).upstream().required_multi_asset_neighbors(),
    )
    return dg.Definitions.merge(defs(), dg.Definitions(jobs=[job])).resolve_job_def("ingest_and_observations")


def raw_scans() -> dg.JobDefinition:
    """The six raw scan assets alone (daily partitioned): used by test_partitions_multiprocess.py."""
    from pipelines.sources.scan_raw import RAW_SCAN_TABLES

    job = dg.define_asset_job("raw_scans", selection=dg.AssetSelection.assets(
        *(dg.AssetKey(t.split(".")) for t in RAW_SCAN_TABLES)))
    return dg.Definitions.merge(defs(), dg.Definitions(jobs=[job])).resolve_job_def("raw_scans")
