-- @table Full listings of each machine's patches, from every source: assessments (Resource Graph patchassessmentresults, assessPatches results, Log Analytics UpdateSummary records and Update record sets) and installation runs that list their patches (Resource Graph patchinstallationresults, installPatches results: Azure lists every available patch of the machine in an installation result, with NotSelected and Excluded ones, so it is an assessment of the machine at that moment). A successful assessment with no missing patch is still evidence that the machine was assessed; coverage (marts.vm_inventory, marts.vm_patch_state, marts.compliance_daily) is the newest successful row of this table. Log Analytics UpdateRunProgress lists only the patches of its deployment and is not a full listing.
-- @column vm_id: Canonical machine id.
-- @column run_id: assessmentActivityId or installationActivityId; NULL for Log Analytics.
-- @column assessed_at: When the assessment or installation run completed (lastModifiedDateTime, else startDateTime; TimeGenerated for Log Analytics).
-- @column source: resource_graph_assessment, patch_operation_assess, resource_graph_installation, patch_operation_install, log_analytics_summary or log_analytics_update.
-- @column status: Succeeded, CompletedWithWarnings, Failed, InProgress, Unknown as the source gives it (Log Analytics records count as Succeeded).
-- @column succeeded: True when the listing can be trusted: Succeeded and CompletedWithWarnings, and for an installation run also Failed when it reports patches (a patch failed; the run still lists the state of every patch).
-- @column reboot_pending: The machine reported a pending reboot (for an installation run: rebootStatus Required, Started or Failed).
-- @column lists_missing_patches: True when the run lists every missing patch (Resource Graph, assessPatches, installation runs), so a patch absent from it is no longer missing.
-- @column os_type: Windows or Linux where the source says.
-- @column missing_count: Number of available (missing) patches the run reports (for an installation run: the patches it did not install: failed, pending, not selected, excluded).
-- @column source_file: The estate file of the first copy of the run.
WITH
-- An incremental build reads only the files that can give runs on or after $from_day (NULL:
-- every file, every day).
params AS (
    SELECT timezone('UTC', CAST($from_day AS DATE)::TIMESTAMP) AS from_ts
),
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
    WHERE ends_with(lower(type), '/patchassessmentresults') AND ($files IS NULL OR source_file IN (SELECT unnest(CAST($files AS VARCHAR[]))))
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
        f.status,
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
    WHERE operation = 'assessPatches' AND ($files IS NULL OR source_file IN (SELECT unnest(CAST($files AS VARCHAR[]))))
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
-- Installation runs: Azure lists every available patch in the result (Installed, Failed, Pending,
-- NotSelected, Excluded), so a run that reports its patches is a full listing like an assessment.
install_properties AS (
    SELECT
        arm_parent(id, '/patchinstallationresults') AS vm_id,
        json_transform(properties, '{
            "installationActivityId": "VARCHAR", "lastModifiedDateTime": "VARCHAR",
            "startDateTime": "VARCHAR", "status": "VARCHAR", "rebootStatus": "VARCHAR",
            "osType": "VARCHAR", "installedPatchCount": "BIGINT", "failedPatchCount": "BIGINT",
            "pendingPatchCount": "BIGINT", "notSelectedPatchCount": "BIGINT",
            "excludedPatchCount": "BIGINT"}') AS f,
        source_file
    FROM raw.patch_installation_resources
    WHERE ends_with(lower(type), '/patchinstallationresults') AND ($files IS NULL OR source_file IN (SELECT unnest(CAST($files AS VARCHAR[]))))
),
install_rg AS (
    SELECT
        vm_id,
        f.installationActivityId,
        coalesce(try_cast(f.lastModifiedDateTime AS TIMESTAMPTZ), try_cast(f.startDateTime AS TIMESTAMPTZ)),
        'resource_graph_installation',
        f.status,
        lower(coalesce(f.rebootStatus, '')) IN ('required', 'started', 'failed'),
        true,
        f.osType,
        coalesce(f.failedPatchCount, 0) + coalesce(f.pendingPatchCount, 0)
            + coalesce(f.notSelectedPatchCount, 0) + coalesce(f.excludedPatchCount, 0),
        source_file,
        coalesce(f.installedPatchCount, 0) + coalesce(f.failedPatchCount, 0) + coalesce(f.pendingPatchCount, 0)
            + coalesce(f.notSelectedPatchCount, 0) + coalesce(f.excludedPatchCount, 0) AS listed
    FROM install_properties
),
install_op AS (
    SELECT
        lower(resourceId),
        r->>'installationActivityId',
        coalesce(try_cast(r->>'lastModifiedDateTime' AS TIMESTAMPTZ), try_cast(r->>'startDateTime' AS TIMESTAMPTZ)),
        'patch_operation_install',
        r->>'status',
        lower(coalesce(r->>'rebootStatus', '')) IN ('required', 'started', 'failed'),
        true,
        r->>'osType',
        len(list_filter(
            from_json(r->'patches', '["JSON"]'),
            lambda p: regexp_replace(lower(coalesce(p->>'installationState', '')), '[^a-z]', '', 'g') <> 'installed'
        )),
        source_file,
        json_array_length(r->'patches') AS listed
    FROM (
        SELECT resourceId, coalesce(result->'properties'->'output', result) AS r, source_file
        FROM raw.patch_operations
        WHERE operation = 'installPatches' AND ($files IS NULL OR source_file IN (SELECT unnest(CAST($files AS VARCHAR[]))))
    )
    -- An Arc installPatches result carries counts only, not the patch list.
    WHERE json_type(r->'patches') = 'ARRAY'
),
installs AS (
    SELECT * EXCLUDE (listed),
           -- Failed: a patch failed, but the run still reports the state of every patch.
           lower(coalesce(status, '')) = 'failed' AND listed > 0 AS failed_with_listing
    FROM (SELECT * FROM install_rg UNION ALL SELECT * FROM install_op)
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
    WHERE $files IS NULL OR s.source_file IN (SELECT unnest(CAST($files AS VARCHAR[])))
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
    WHERE $files IS NULL OR u.source_file IN (SELECT unnest(CAST($files AS VARCHAR[])))
    GROUP BY m.vm_id, u.TimeGenerated
),
runs AS (
    SELECT *, false AS failed_with_listing FROM arg
    UNION ALL SELECT *, false FROM op
    UNION ALL SELECT *, false FROM summary
    UNION ALL SELECT *, false FROM update_sets
    UNION ALL SELECT * FROM installs
)
-- The same run appears in every daily Resource Graph file until the next one replaces it: kept
-- once, from its first file (a grouping, not a window: no sort of every row).
SELECT
    vm_id,
    first.run_id,
    assessed_at,
    source,
    first.status,
    first.succeeded,
    first.reboot_pending,
    first.lists_missing_patches,
    first.os_type,
    first.missing_count,
    first.source_file
FROM (
    SELECT
        vm_id, source, assessed_at, coalesce(run_id, '') AS run_key,
        arg_min_nulls_last({
            'run_id': run_id, 'status': status,
            'succeeded': lower(coalesce(status, '')) IN ('succeeded', 'completedwithwarnings') OR failed_with_listing,
            'reboot_pending': reboot_pending, 'lists_missing_patches': lists_missing_patches, 'os_type': os_type,
            'missing_count': missing_count::BIGINT, 'source_file': source_file
        }, source_file) AS first
    FROM runs
    WHERE vm_id IS NOT NULL AND vm_id <> '' AND assessed_at IS NOT NULL
      AND assessed_at >= coalesce((SELECT from_ts FROM params), '-infinity'::TIMESTAMPTZ)
    GROUP BY vm_id, source, assessed_at, run_key
)
