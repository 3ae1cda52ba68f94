"""Dagster asset definitions, one module per stage of the patch-management process."""
