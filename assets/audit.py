"""Stage 6: the scheduled audit of installed versus authorized, with the Yellow Book elements."""

from pipelines.tables import count_by, sql_table_asset

# Description, deps and the finding_ids_unique check: the header of sql/audit_findings.sql.
audit_findings = sql_table_asset(
    "marts.audit_findings",
    metadata=count_by("marts.audit_findings", "severity", "findings_by_severity"),
    preview_rows=10,
    order_by="rule, subject",
)
