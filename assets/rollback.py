"""Stage 6: rollback readiness: a recovery point before every production change."""

from pipelines.tables import count_by, sql_table_asset

# Descriptions and deps: the headers of sql/vm_rollback_readiness.sql and sql/rollback_findings.sql.
vm_rollback_readiness = sql_table_asset(
    "marts.vm_rollback_readiness",
    metadata=count_by("marts.vm_rollback_readiness", "readiness", "by_readiness"),
)
rollback_findings = sql_table_asset(
    "marts.rollback_findings", metadata=count_by("marts.rollback_findings", "rule", "by_rule")
)
