"""The evidence pack: what it says (queries), its charts, the report document (HTML and PDF),
the interactive dashboard, the populations (CSV and workbook) and the manifest (pack)."""

from pipelines.reporting.pack import ledger_heads, sha256_file, write_reports
from pipelines.reporting.queries import POPULATIONS, population_rows, report_as_of, report_data
from pipelines.reporting.workbook import neutralize

__all__ = [
    "POPULATIONS", "ledger_heads", "neutralize", "population_rows", "report_as_of", "report_data",
    "sha256_file", "write_reports",
]
