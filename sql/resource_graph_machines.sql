-- @table The machines Azure Resource Graph patch results name (raw.patch_assessment_resources, raw.patch_installation_resources), one row each, for staging.vm_identity. Kept by file (assets/inventory.py): a run reads only the result files added since the previous build; a file changed or gone rebuilds it from every file.
-- @column vm_id: The machine's lower-case ARM id: the result id before its /patchAssessmentResults or /patchInstallationResults segment.
WITH
-- Resource Graph result ids are <machine ARM id>/patchAssessmentResults/... (or /patchInstallationResults/...): the
-- machine is the text before the first such segment. The ids repeat (1.5 M rows, ~76 k distinct at 10,000 VMs), so
-- distinct ids first, then a plain string cut (a regular expression per row cost seconds).
-- $files: the result files to read (NULL: all).
resource_graph_ids AS (
    SELECT lower(id) AS id, kind
    FROM (
        SELECT DISTINCT id, 'assessment' AS kind FROM raw.patch_assessment_resources
        WHERE $files::VARCHAR[] IS NULL OR list_contains($files::VARCHAR[], source_file)
        UNION ALL
        SELECT DISTINCT id, 'installation' FROM raw.patch_installation_resources
        WHERE $files::VARCHAR[] IS NULL OR list_contains($files::VARCHAR[], source_file)
    )
),
-- The segment that follows the machine id, per table. Joined in rather than written as a literal so that DuckDB
-- cannot push the filters on vm_id below the DISTINCT, where they would run on all 1.5 M rows again.
markers(kind, marker) AS (
    VALUES ('assessment', '/patchassessmentresults'), ('installation', '/patchinstallationresults')
)
SELECT DISTINCT split_part(id, marker, 1) AS vm_id
FROM resource_graph_ids JOIN markers USING (kind)
-- As with the regexp: no machine without the segment, nor when a newline precedes it (the regexp's '.' stops there).
WHERE contains(id, marker) AND NOT contains(split_part(id, marker, 1), chr(10))
