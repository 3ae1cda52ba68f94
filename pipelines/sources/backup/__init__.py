"""Azure Backup protected items, backup policies and VM restore points: the machine's way back.

    estate/azure/backup/*.json

Each file is an ARM list body ({"value": [...]}: `GET .../vaults/{vault}/backupProtectedItems`,
`.../backupPolicies`, `GET .../restorePointCollections` with `$expand=restorePoints`), `az graph
query` output ({"data": [...]}) of the Resource Graph `recoveryservicesresources` / `resources`
tables, or a bare JSON array. Rows of the types in reader.TYPES land in raw.backup_resources;
staging keeps the protected items of virtual machines (staging.backup_protected_items), the
backup policies (staging.backup_policies) and every recovery point known
(staging.backup_recovery_points). A file named `<anything>-YYYYMMDDTHHMMSSZ.json` is a dated
capture: every capture is kept, so the backup state on any past date is known.

reader.py   the offline loader (DuckDB reads the files; errors name file, row and field)
live.py     live mode: Resource Graph (protected VMs, restore point collections) into one dated capture
policy.py   the rollback-readiness policy (pipelines/config/rollback_readiness.yaml)
assets.py   raw and staging assets
"""
