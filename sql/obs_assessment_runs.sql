-- @table Assessment runs per machine, from every source: Resource Graph patchassessmentresults, assessPatches results, Log Analytics UpdateSummary records and Update record sets. A successful assessment with no missing patch is still evidence that the machine was assessed; coverage (marts.vm_inventory) is computed from this table.
-- @column vm_id: Canonical machine id.
-- @column run_id: assessmentActivityId; NULL for Log Analytics.
-- @column assessed_at: When the assessment completed (lastModifiedDateTime, else startDateTime; TimeGenerated for Log Analytics).
-- @column source: resource_graph_assessment, patch_operation_assess, log_analytics_summary or log_analytics_update.
-- @column status: Succeeded, CompletedWithWarnings, Failed, InProgress, Unknown as the source gives it (Log Analytics records count as Succeeded).
-- @column succeeded: True for Succeeded and CompletedWithWarnings.
-- @column reboot_pending: The machine reported a pending reboot.
-- @column lists_missing_patches: True when the run lists every missing patch (Resource Graph, assessPatches), so a patch absent from it is no longer missing.
-- @column os_type: Windows or Linux where the source says.
-- @column missing_count: Number of available (missing) patches the run reports.
-- @column source_file: The estate file of the first copy of the run.
WITH
-- Properties are parsed once into a struct (every ->> would parse the document again).
arg_properties AS (
    SELECT
        arm_parent(id, '/patchassessmentresults') AS vm_id,
        json_transform(properties, '{
            "assessmentActivityId": "VARCHAR", "lastModifiedDateTime": "VARCHAR",
            "startDateTime": "VARCHAR", "status": "VARCHAR", "rebootPending": "VARCHAR",
            "osType": "VARCHAR", "availablePatchCountByClassification": "JSON"}') AS f,
        source_file
    FROM raw.patch_assessment_resources
    WHERE ends_with(lower(type), '/patchassessmentresults')
),
arg AS (
    SELECT
        vm_id,
        f.assessmentActivityId AS run_id,
        coalesce(
            try_cast(f.lastModifiedDateTime AS TIMESTAMPTZ),
            try_cast(f.startDateTime AS TIMESTAMPTZ)
        ) AS assessed_at,
        'resource_graph_assessment' AS source,
        f.status AS status,
        try_cast(f.rebootPending AS BOOLEAN) AS reboot_pending,
        true AS lists_missing_patches,
        f.osType AS os_type,
        list_sum(list_transform(
            json_extract_string(f.availablePatchCountByClassification, '$.*'),
            lambda v: try_cast(v AS BIGINT)
        )) AS missing_count,
        source_file
    FROM arg_properties
),
operations AS (
    SELECT
        lower(resourceId) AS vm_id,
        coalesce(result->'properties'->'output', result) AS r,
        source_file
    FROM raw.patch_operations
    WHERE operation = 'assessPatches'
),
op AS (
    SELECT
        vm_id,
        r->>'assessmentActivityId',
        coalesce(try_cast(r->>'lastModifiedDateTime' AS TIMESTAMPTZ), try_cast(r->>'startDateTime' AS TIMESTAMPTZ)),
        'patch_operation_assess',
        r->>'status',
        try_cast(r->>'rebootPending' AS BOOLEAN),
        -- An Arc assessPatches result carries counts only, not the patch list.
        json_type(r->'availablePatches') = 'ARRAY',
        r->>'osType',
        coalesce(
            json_array_length(r->'availablePatches'),
            try_cast(r->>'criticalAndSecurityPatchCount' AS BIGINT) + try_cast(r->>'otherPatchCount' AS BIGINT)
        ),
        source_file
    FROM operations
),
summary AS (
    SELECT
        m.vm_id,
        NULL,
        s.TimeGenerated,
        'log_analytics_summary',
        'Succeeded',
        s.RestartPending,
        false,
        NULL,
        s.TotalUpdatesMissing,
        s.source_file
    FROM raw.la_update_summary AS s
    JOIN staging.vm_la_machines AS m
      ON m.la_key = lower(coalesce(nullif(s._ResourceId, ''), nullif(s.ResourceId, ''), ''))
            || '|' || lower(coalesce(s.VMUUID, '')) || '|' || lower(coalesce(s.SourceComputerId, ''))
            || '|' || lower(coalesce(s.Computer, ''))
),
-- Each Log Analytics assessment writes a new set of Update records with one TimeGenerated.
update_sets AS (
    SELECT
        m.vm_id,
        NULL,
        u.TimeGenerated,
        'log_analytics_update',
        'Succeeded',
        NULL::BOOLEAN,
        false,
        max(u.OSType),
        count(*) FILTER (WHERE regexp_replace(lower(u.UpdateState), '[^a-z]', '', 'g') = 'needed'),
        min(u.source_file)
    FROM raw.la_update AS u
    JOIN staging.vm_la_machines AS m
      ON m.la_key = lower(coalesce(nullif(u._ResourceId, ''), nullif(u.ResourceId, ''), ''))
            || '|' || lower(coalesce(u.VMUUID, '')) || '|' || lower(coalesce(u.SourceComputerId, ''))
            || '|' || lower(coalesce(u.Computer, ''))
    GROUP BY m.vm_id, u.TimeGenerated
),
runs AS (
    SELECT * FROM arg
    UNION ALL SELECT * FROM op
    UNION ALL SELECT * FROM summary
    UNION ALL SELECT * FROM update_sets
)
SELECT
    vm_id,
    run_id,
    assessed_at,
    source,
    status,
    lower(coalesce(status, '')) IN ('succeeded', 'completedwithwarnings') AS succeeded,
    reboot_pending,
    lists_missing_patches,
    os_type,
    missing_count::BIGINT AS missing_count,
    source_file
FROM runs
WHERE vm_id IS NOT NULL AND vm_id <> '' AND assessed_at IS NOT NULL
-- The same run appears in every daily Resource Graph file until the next one replaces it.
QUALIFY row_number() OVER (
    PARTITION BY vm_id, source, assessed_at, coalesce(run_id, '') ORDER BY source_file
) = 1
