"""PatchLedger: the Dagster code location, resources, connectors and command line."""

__version__ = "0.1.0"
