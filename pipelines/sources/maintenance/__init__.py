"""Azure maintenance configurations (Azure Update Manager schedules) and their assignments.

    estate/azure/maintenance/*.json

Each file is an ARM list body ({"value": [...]}, e.g. `GET .../maintenanceConfigurations` or
`.../configurationAssignments`), `az graph query` output ({"data": [...]}) of the Resource Graph
`maintenanceresources` / `resources` tables, or a bare JSON array. Rows of every
`Microsoft.Maintenance/*` type land in raw.maintenance_resources; staging keeps the
maintenanceConfigurations (staging.maintenance_configurations) and the configurationAssignments
(staging.maintenance_assignments). A file named `<anything>-YYYYMMDDTHHMMSSZ.json` is a dated
capture (live mode writes one per run); the latest capture up to the evaluation date is in force.

reader.py   the offline loader (DuckDB reads the files; errors name file, row and field)
live.py     live mode: the official SDK (azure-mgmt-maintenance) writes one dated capture
recurrence.py  the schedule of an InGuestPatch configuration (recurEvery, startDateTime,
            expirationDateTime, duration, timeZone) as an RRULE, a day offset and an IANA zone,
            read by the remediation schedule's windows (assets/remediation.py)
assets.py   raw and staging assets, and their checks
"""
