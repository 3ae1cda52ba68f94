"""The one ingestion framework every source uses (docs/architecture.md, "Ingest").

- `errors`: SourceFileError, the error of a file that is not its documented format (the message
  names the file and, where it applies, the row and the field).
- `files`: what a file is (SHA-256, name relative to the estate, UTF-8 / gzip / empty checks) and
  the ingestion plan: `plan_ingest` decides from `raw.ingested_files` which files to read and
  returns them with the `IngestStats` of the load. Loaders return those statistics; the raw
  asset reports them as `ingest/*` metadata.
- `bulk`: read many files in one DuckDB statement with provenance, explain a failed read by the
  first file that fails on its own, and the row-level checks (file, row, field).
- `arm`: a folder of ARM resources (list bodies, `az graph query` output, arrays) into a raw table,
  the files of one shape in one statement.
- `quarantine`: `raw.quarantine`, rows set aside instead of failing a large export.
- `azure`: the live side shared by the Azure sources: access (credential, transport), error
  wrapping and redaction, atomic captures, Resource Graph paging and quota pacing.

Ingestion styles. Every estate file source goes through `plan_ingest` (the quick check on name,
size and mtime, else per-file SHA-256 against the manifest: unchanged files and copies skipped,
a changed file replaces its own rows). One
style stays apart on purpose: the registers (`pipelines/sources/registers/`) are small,
hand-kept CSVs that are validated whole (every problem of the file reported at once) and then
replace their table; their history is the hash-chained ledger, not the manifest.
"""
