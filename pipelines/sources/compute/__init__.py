"""Azure Compute: the VM inventory (data-sources.md, "Azure Compute").

Layout (docs/estate.md): `azure/virtual_machines.json` (an undated snapshot) and the dated
`azure/virtual_machines/virtual_machines-<YYYYMMDDTHHMMSSZ>.json` snapshots, the capture time
(UTC) in the name; each `az vm list --show-details` output (array) or an ARM list body.

Contract: `raw.virtual_machines` (VIRTUAL_MACHINE_COLUMNS + provenance), read by
sql/vm_snapshots.sql and the identity SQL. Here: reader (offline), live (SDK fetch into a dated
snapshot), assets (the raw asset); the derived vm_* marts are stage code (assets/inventory.py).
"""

import re

VIRTUAL_MACHINE_COLUMNS = {"id": "VARCHAR", "name": "VARCHAR", "resource": "JSON"}

VM_SNAPSHOT_DIR = ("azure", "virtual_machines")
VM_SNAPSHOT_NAME = re.compile(r"virtual_machines-\d{8}T\d{6}Z\.json")
RAW_TABLE = "raw.virtual_machines"
