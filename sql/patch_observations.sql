-- @table One row per observation of one patch on one machine, from every source (contract: docs/architecture.md). Resource Graph and assessPatches list the patches missing at assessment time; installation results, Log Analytics Update and UpdateRunProgress give explicit states. An installed patch whose run still needs a reboot is installed_pending_reboot. A patch installed with a pending reboot (per Azure Update Manager) is recorded as installed (raw_state reboot_completed) at the first later full assessment (Resource Graph, assessPatches) that reports no pending reboot and does not list it, when nothing else was observed in between. A patch that merely disappears from a later assessment is NOT inferred installed: Windows Update stops offering a patch once a superseding one applies, so absence is not evidence of installation; its state stays the last observed one and supersedence is resolved downstream (superseded_satisfied). Identical copies (the same run in several daily files or exports) are kept once.
-- @column vm_id: Canonical machine id: lower-case ARM id (Azure VM or Arc machine), or nonazure/<computer>.
-- @column patch_key: KB digits, or <package>_<version> for a Linux package whichever source it came from (Resource Graph patchName and version, the Compute API name and version, Log Analytics Update Product and ProductVersion, UpdateRunProgress Product and the version that follows it in Title).
-- @column kb: KB digits or NULL.
-- @column patch_name: Title as the source gives it.
-- @column classification: Normalized: Critical, Security, UpdateRollup, FeaturePack, ServicePack, Definition, Tools, Updates, Other (the most severe when a patch has several); NULL when the source gives none.
-- @column msrc_severity: Critical, Important, Moderate, Low or NULL.
-- @column raw_state: The source's own state word (Available, Installed, Failed, Pending, NotSelected, Excluded, Needed, Not needed, SucceededOnRetry, ...), or reboot_completed for an inferred end of a pending reboot.
-- @column state: Canonical state: installed, installed_pending_reboot, missing, failed, not_applicable or not_selected.
-- @column source: resource_graph_assessment, resource_graph_installation, patch_operation_assess, patch_operation_install, log_analytics_update, log_analytics_run.
-- @column observed_at: When the source observed it (the assessment or installation run's time, TimeGenerated for Log Analytics).
-- @column run_id: Assessment / installation activity id, or the Log Analytics CorrelationId.
-- @column source_file: The estate file.
WITH
-- An incremental build reads only the files that can give rows on or after $from_day (NULL:
-- every file, every day).
params AS (
    SELECT timezone('UTC', CAST($from_day AS DATE)::TIMESTAMP) AS from_ts
),
-- Each Resource Graph row's properties are parsed once into a struct (every ->> would parse the
-- document again). Not materialized: its two readers take disjoint rows (runs, patches), so
-- each parses only its own, and no copy of every parsed row is held (at 10,000 VMs x 90 days
-- that copy made the full build spill at the memory limit).
arg_assess AS NOT MATERIALIZED (
    SELECT
        lower(type) AS t,
        arm_parent(id, '/patchassessmentresults') AS vm_id,
        json_transform(properties, '{
            "assessmentActivityId": "VARCHAR", "lastModifiedDateTime": "VARCHAR",
            "startDateTime": "VARCHAR", "kbId": "VARCHAR", "patchName": "VARCHAR",
            "version": "VARCHAR", "classifications": "JSON", "msrcSeverity": "VARCHAR",
            "assessmentState": "VARCHAR"}') AS f,
        source_file
    FROM raw.patch_assessment_resources
    WHERE ($files IS NULL OR source_file IN (SELECT unnest(CAST($files AS VARCHAR[]))))
),
assess_parent AS (
    SELECT
        vm_id,
        source_file,
        f.assessmentActivityId AS run_id,
        coalesce(
            try_cast(f.lastModifiedDateTime AS TIMESTAMPTZ),
            try_cast(f.startDateTime AS TIMESTAMPTZ)
        ) AS assessed_at
    FROM arg_assess
    WHERE ends_with(t, '/patchassessmentresults')
    QUALIFY row_number() OVER (PARTITION BY vm_id, source_file ORDER BY assessed_at DESC) = 1
),
rg_assessment AS (
    SELECT
        c.vm_id,
        c.f.kbId AS kb_raw,
        c.f.patchName AS patch_name,
        c.f.version AS version,  -- noqa: AL09
        from_json(c.f.classifications, '["VARCHAR"]') AS classifications,
        c.f.msrcSeverity AS msrc_severity,
        coalesce(c.f.assessmentState, 'Available') AS raw_state,
        'missing' AS state,
        'resource_graph_assessment' AS source,
        coalesce(p.assessed_at, try_cast(c.f.lastModifiedDateTime AS TIMESTAMPTZ)) AS observed_at,
        p.run_id,
        c.source_file
    FROM arg_assess AS c
    LEFT JOIN assess_parent AS p ON p.vm_id = c.vm_id AND p.source_file = c.source_file
    WHERE ends_with(c.t, '/patchassessmentresults/softwarepatches')
),
arg_install AS (
    SELECT
        lower(type) AS t,
        arm_parent(id, '/patchinstallationresults') AS vm_id,
        -- The run segment after '/patchinstallationresults/' (26 characters).
        CASE WHEN strpos(lower(id), '/patchinstallationresults/') > 0
             THEN split_part(substr(lower(id), strpos(lower(id), '/patchinstallationresults/') + 26), '/', 1)
             WHEN id IS NOT NULL THEN '' END AS run_key,
        json_transform(properties, '{
            "installationActivityId": "VARCHAR", "rebootStatus": "VARCHAR",
            "lastModifiedDateTime": "VARCHAR", "startDateTime": "VARCHAR", "kbId": "VARCHAR",
            "patchName": "VARCHAR", "version": "VARCHAR", "classifications": "JSON",
            "msrcSeverity": "VARCHAR", "installationState": "VARCHAR",
            "rebootRequired": "VARCHAR"}') AS f,
        source_file
    FROM raw.patch_installation_resources
    WHERE ($files IS NULL OR source_file IN (SELECT unnest(CAST($files AS VARCHAR[]))))
),
install_parent AS (
    SELECT
        vm_id,
        run_key,
        source_file,
        f.installationActivityId AS run_id,
        f.rebootStatus AS reboot_status,
        coalesce(
            try_cast(f.lastModifiedDateTime AS TIMESTAMPTZ),
            try_cast(f.startDateTime AS TIMESTAMPTZ)
        ) AS finished_at
    FROM arg_install
    WHERE ends_with(t, '/patchinstallationresults')
),
rg_installation AS (
    SELECT
        c.vm_id,
        c.f.kbId AS kb_raw,
        c.f.patchName AS patch_name,
        c.f.version AS version,  -- noqa: AL09
        from_json(c.f.classifications, '["VARCHAR"]') AS classifications,
        c.f.msrcSeverity AS msrc_severity,
        c.f.installationState AS raw_state,
        p.reboot_status,
        try_cast(c.f.rebootRequired AS BOOLEAN) AS reboot_required,
        'resource_graph_installation' AS source,
        coalesce(p.finished_at, try_cast(c.f.lastModifiedDateTime AS TIMESTAMPTZ)) AS observed_at,
        coalesce(p.run_id, c.run_key) AS run_id,
        c.source_file
    FROM arg_install AS c
    LEFT JOIN install_parent AS p
      ON p.vm_id = c.vm_id AND p.run_key = c.run_key AND p.source_file = c.source_file
    WHERE ends_with(c.t, '/patchinstallationresults/softwarepatches')
),
operations AS (
    SELECT
        lower(resourceId) AS vm_id,
        operation,
        -- The async-operation URL wraps the result in properties.output.
        coalesce(result->'properties'->'output', result) AS r,
        source_file
    FROM raw.patch_operations
    WHERE ($files IS NULL OR source_file IN (SELECT unnest(CAST($files AS VARCHAR[]))))
),
op_patches AS (
    SELECT
        vm_id,
        operation,
        r,
        unnest(from_json(coalesce(r->'availablePatches', r->'patches', '[]'), '["JSON"]')) AS p,
        source_file
    FROM operations
),
op_rows AS (
    SELECT
        vm_id,
        p->>'kbId' AS kb_raw,
        p->>'name' AS patch_name,
        p->>'version' AS version,
        from_json(p->'classifications', '["VARCHAR"]') AS classifications,
        p->>'msrcSeverity' AS msrc_severity,
        CASE operation WHEN 'assessPatches' THEN coalesce(p->>'assessmentState', 'Available') ELSE p->>'installationState' END AS raw_state,
        r->>'rebootStatus' AS reboot_status,
        try_cast(p->>'rebootRequired' AS BOOLEAN) AS reboot_required,
        CASE operation WHEN 'assessPatches' THEN 'patch_operation_assess' ELSE 'patch_operation_install' END AS source,
        CASE operation
            WHEN 'assessPatches' THEN coalesce(
                try_cast(r->>'lastModifiedDateTime' AS TIMESTAMPTZ), try_cast(r->>'startDateTime' AS TIMESTAMPTZ))
            ELSE coalesce(
                try_cast(r->>'lastModifiedDateTime' AS TIMESTAMPTZ), try_cast(r->>'startDateTime' AS TIMESTAMPTZ),
                try_cast(p->>'lastModifiedDateTime' AS TIMESTAMPTZ))
        END AS observed_at,
        coalesce(r->>'assessmentActivityId', r->>'installationActivityId') AS run_id,
        source_file
    FROM op_patches
),
-- Installation results: a run that installed the patch but still needs a reboot is not done.
installs AS (
    SELECT
        vm_id, kb_raw, patch_name, version, classifications, msrc_severity, raw_state,
        CASE regexp_replace(lower(raw_state), '[^a-z]', '', 'g')
            WHEN 'installed' THEN
                CASE
                    WHEN lower(coalesce(reboot_status, '')) = 'required' THEN 'installed_pending_reboot'
                    WHEN reboot_required AND lower(coalesce(reboot_status, '')) NOT IN ('completed', 'notneeded')
                        THEN 'installed_pending_reboot'
                    ELSE 'installed'
                END
            WHEN 'failed' THEN 'failed'
            WHEN 'notselected' THEN 'not_selected'
            WHEN 'excluded' THEN 'not_selected'
            ELSE 'missing'  -- Pending, Unknown: the run did not install it
        END AS state,
        source, observed_at, run_id, source_file
    FROM (SELECT * FROM rg_installation UNION ALL BY NAME SELECT * FROM op_rows WHERE source = 'patch_operation_install')
),
assessments AS (
    SELECT vm_id, kb_raw, patch_name, version, classifications, msrc_severity, raw_state,
           'missing' AS state, source, observed_at, run_id, source_file
    FROM rg_assessment
    UNION ALL
    SELECT vm_id, kb_raw, patch_name, version, classifications, msrc_severity, raw_state,
           'missing', source, observed_at, run_id, source_file
    FROM op_rows
    WHERE source = 'patch_operation_assess'
),
la_update AS (
    SELECT
        m.vm_id,
        u.KBID AS kb_raw,
        coalesce(nullif(u.Title, ''), u.Product) AS patch_name,
        CASE WHEN nullif(regexp_replace(coalesce(u.KBID, ''), '[^0-9]', '', 'g'), '') IS NULL THEN u.Product END AS package,
        u.ProductVersion AS version,
        [u.Classification] AS classifications,
        u.MSRCSeverity AS msrc_severity,
        u.UpdateState AS raw_state,
        CASE regexp_replace(lower(u.UpdateState), '[^a-z]', '', 'g')
            -- Microsoft's own queries: missing means Needed and Approved != false.
            WHEN 'needed' THEN CASE WHEN u.Approved = false THEN 'not_selected' ELSE 'missing' END
            WHEN 'installed' THEN 'installed'
            WHEN 'notneeded' THEN 'not_applicable'
            ELSE 'missing'
        END AS state,
        'log_analytics_update' AS source,
        u.TimeGenerated AS observed_at,
        NULL AS run_id,
        u.source_file
    FROM raw.la_update AS u
    JOIN staging.vm_la_machines AS m
      ON m.la_key = lower(coalesce(nullif(u._ResourceId, ''), nullif(u.ResourceId, ''), ''))
            || '|' || lower(coalesce(u.VMUUID, '')) || '|' || lower(coalesce(u.SourceComputerId, ''))
            || '|' || lower(coalesce(u.Computer, ''))
    WHERE $files IS NULL OR u.source_file IN (SELECT unnest(CAST($files AS VARCHAR[])))
),
la_run AS (
    SELECT
        m.vm_id,
        r.KBID AS kb_raw,
        coalesce(nullif(r.Title, ''), r.Product) AS patch_name,
        CASE WHEN nullif(regexp_replace(coalesce(r.KBID, ''), '[^0-9]', '', 'g'), '') IS NULL
             THEN coalesce(nullif(trim(r.Product), ''), split_part(trim(r.Title), ' ', 1)) END AS package,
        -- UpdateRunProgress has no version column: a Linux row's Title is "<package> <version>".
        CASE WHEN package IS NOT NULL AND starts_with(trim(r.Title), package || ' ')
             THEN nullif(trim(substr(trim(r.Title), length(package) + 2)), '') END AS version,
        NULL::VARCHAR[] AS classifications,
        NULL AS msrc_severity,
        r.InstallationStatus AS raw_state,
        CASE regexp_replace(lower(r.InstallationStatus), '[^a-z]', '', 'g')
            WHEN 'succeeded' THEN 'installed'
            WHEN 'succeededonretry' THEN 'installed'
            WHEN 'installed' THEN 'installed'  -- not in the documented set, but seen in exports
            WHEN 'failed' THEN 'failed'
            WHEN 'installfailed' THEN 'failed'
            WHEN 'notincluded' THEN 'not_selected'
            WHEN 'excluded' THEN 'not_selected'
            -- NotStarted, InProgress, Pending, MaintenanceWindowExceeded: still not installed.
            -- The loader rejects any other value, so nothing unknown reaches this point.
            ELSE 'missing'
        END AS state,
        'log_analytics_run' AS source,
        r.TimeGenerated AS observed_at,
        r.CorrelationId AS run_id,
        r.source_file
    FROM raw.la_update_run_progress AS r
    JOIN staging.vm_la_machines AS m
      ON m.la_key = lower(coalesce(nullif(r._ResourceId, ''), nullif(r.ResourceId, ''), ''))
            || '|' || lower(coalesce(r.VMUUID, '')) || '|' || lower(coalesce(r.SourceComputerId, ''))
            || '|' || lower(coalesce(r.Computer, ''))
    WHERE $files IS NULL OR r.source_file IN (SELECT unnest(CAST($files AS VARCHAR[])))
),
unioned AS (
    SELECT *, NULL AS package FROM installs
    UNION ALL BY NAME SELECT *, NULL AS package FROM assessments
    UNION ALL BY NAME SELECT * FROM la_update
    UNION ALL BY NAME SELECT * FROM la_run
),
keyed AS (
    SELECT
        vm_id,
        nullif(regexp_replace(coalesce(kb_raw, ''), '[^0-9]', '', 'g'), '') AS kb,
        patch_name,
        version,
        package,
        classifications,
        msrc_severity,
        raw_state,
        state,
        source,
        observed_at,
        run_id,
        source_file
    FROM unioned
    WHERE vm_id IS NOT NULL AND vm_id <> '' AND observed_at IS NOT NULL
      AND observed_at >= coalesce((SELECT from_ts FROM params), '-infinity'::TIMESTAMPTZ)
),
-- Identical copies kept once: of the rows of one observation, the one of the first file (a
-- grouping, not a window: no sort of every row).
recomputed AS (
    SELECT
        vm_id,
        patch_key,
        first.kb,
        first.patch_name,
        first.classifications,
        first.msrc_severity,
        first.raw_state,
        state,
        source,
        observed_at,
        first.run_id,
        first.source_file
    FROM (
        SELECT
            vm_id, patch_key, source, observed_at, coalesce(run_id, '') AS run_key, state,
            arg_min_nulls_last({'kb': kb, 'patch_name': patch_name, 'classifications': classifications,
                                'msrc_severity': msrc_severity, 'raw_state': raw_state, 'run_id': run_id,
                                'source_file': source_file}, source_file) AS first
        FROM (
            SELECT *, coalesce(kb, concat_ws('_', coalesce(package, patch_name), nullif(version, ''))) AS patch_key
            FROM keyed
        )
        GROUP BY vm_id, patch_key, source, observed_at, run_key, state
    )
),
-- An incremental build: the rows kept (before $from_day; kept_observations, empty for a full
-- build) give the pending reboots still open when that day starts: the newest explicit
-- observations of a machine/patch when one is a pending reboot and no full assessment without
-- a pending reboot followed before that day. They carry over so their end can be inferred.
kept_pending_pairs AS (
    SELECT DISTINCT vm_id, patch_key
    FROM kept_observations
    WHERE state = 'installed_pending_reboot'
      AND source NOT IN ('log_analytics_update', 'log_analytics_run')
),
last_kept AS (
    SELECT k.*
    FROM kept_observations AS k
    SEMI JOIN kept_pending_pairs AS p ON p.vm_id = k.vm_id AND p.patch_key = k.patch_key
    WHERE k.raw_state IS DISTINCT FROM 'reboot_completed'
    QUALIFY max(k.observed_at) OVER (PARTITION BY k.vm_id, k.patch_key) = k.observed_at
),
carried AS (
    SELECT k.vm_id, k.patch_key, k.kb, k.patch_name, [k.classification] AS classifications, k.msrc_severity,
           k.raw_state, k.state, k.source, k.observed_at, k.run_id, k.source_file
    FROM last_kept AS k
    WHERE EXISTS (SELECT 1 FROM last_kept AS q
                  WHERE q.vm_id = k.vm_id AND q.patch_key = k.patch_key AND q.state = 'installed_pending_reboot'
                    AND q.source NOT IN ('log_analytics_update', 'log_analytics_run'))
      AND NOT EXISTS (SELECT 1 FROM staging.assessment_runs AS a
                      WHERE a.vm_id = k.vm_id AND a.succeeded AND a.lists_missing_patches
                        AND a.reboot_pending = false AND a.assessed_at > k.observed_at
                        AND a.assessed_at < (SELECT from_ts FROM params))
),
-- Not materialized: its readers read recomputed's rows (held once) and the few carried ones.
explicit AS NOT MATERIALIZED (
    SELECT * FROM recomputed
    UNION ALL
    SELECT * FROM carried
),
-- Machine/patch pairs that ever had a pending reboot from Azure Update Manager: only their
-- history is needed to infer when the reboot completed (a window over every observation would
-- sort the whole table).
pending_pairs AS (
    SELECT DISTINCT vm_id, patch_key
    FROM explicit
    WHERE state = 'installed_pending_reboot'
      AND source NOT IN ('log_analytics_update', 'log_analytics_run')
),
-- The state at each time a patch was observed: the highest-precedence source at that time.
per_time AS (
    SELECT e.*, lead(e.observed_at) OVER (PARTITION BY e.vm_id, e.patch_key ORDER BY e.observed_at) AS next_observed_at
    FROM explicit AS e
    SEMI JOIN pending_pairs AS p ON p.vm_id = e.vm_id AND p.patch_key = e.patch_key
    QUALIFY row_number() OVER (
        PARTITION BY e.vm_id, e.patch_key, e.observed_at ORDER BY source_rank(e.source), e.state, e.run_id
    ) = 1
),
full_assessments AS (
    SELECT vm_id, assessed_at, run_id, source, reboot_pending, source_file
    FROM staging.assessment_runs
    WHERE succeeded AND lists_missing_patches
      AND assessed_at >= coalesce((SELECT from_ts FROM params), '-infinity'::TIMESTAMPTZ)
),
pending_reboots AS (
    SELECT *
    FROM per_time
    WHERE state = 'installed_pending_reboot'
      AND source NOT IN ('log_analytics_update', 'log_analytics_run')
),
-- A pending reboot ends at the first full assessment that reports no pending reboot.
-- (Only those of the machines with a pending reboot: the as-of join sorts what it is given.)
reboot_done AS (
    SELECT * FROM full_assessments
    SEMI JOIN (SELECT DISTINCT vm_id FROM pending_pairs) AS p USING (vm_id)
    WHERE reboot_pending = false
),
inferred AS (
    SELECT
        o.vm_id, o.patch_key, o.kb, o.patch_name, o.classifications, o.msrc_severity,
        'reboot_completed', 'installed',
        a.source, a.assessed_at, a.run_id, a.source_file
    FROM pending_reboots AS o
    ASOF JOIN reboot_done AS a ON a.vm_id = o.vm_id AND a.assessed_at > o.observed_at
    WHERE (o.next_observed_at IS NULL OR o.next_observed_at > a.assessed_at)
),
observations AS (
    SELECT * FROM recomputed
    UNION ALL
    SELECT * FROM inferred
)
SELECT
    vm_id,
    patch_key,
    kb,
    patch_name,
    ['Critical', 'Security', 'UpdateRollup', 'FeaturePack', 'ServicePack', 'Definition', 'Tools', 'Updates', 'Other'][
        list_min(list_transform(list_filter(classifications, lambda c: nullif(trim(c), '') IS NOT NULL), lambda c:
            CASE regexp_replace(lower(c), '[^a-z]', '', 'g')
                WHEN 'critical' THEN 1 WHEN 'criticalupdates' THEN 1
                WHEN 'security' THEN 2 WHEN 'securityupdates' THEN 2 WHEN 'securityesm' THEN 2
                WHEN 'updaterollup' THEN 3 WHEN 'updaterollups' THEN 3
                WHEN 'featurepack' THEN 4 WHEN 'featurepacks' THEN 4
                WHEN 'servicepack' THEN 5 WHEN 'servicepacks' THEN 5
                WHEN 'definition' THEN 6 WHEN 'definitionupdates' THEN 6 WHEN 'definitions' THEN 6
                WHEN 'tools' THEN 7
                WHEN 'updates' THEN 8
                ELSE 9
            END))
    ] AS classification,
    CASE lower(trim(msrc_severity))
        WHEN 'critical' THEN 'Critical'
        WHEN 'important' THEN 'Important'
        WHEN 'moderate' THEN 'Moderate'
        WHEN 'low' THEN 'Low'
    END AS msrc_severity,
    raw_state,
    state,
    source,
    observed_at,
    run_id,
    source_file
FROM observations
WHERE patch_key IS NOT NULL AND patch_key <> ''
