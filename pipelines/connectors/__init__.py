"""Source connectors: one module per source of the estate folder (or Azure in live mode)."""
