-- @summary Installs on production machines while they could update themselves.
-- @group stage6_patch_monitoring
-- @depends marts.authorization_install_findings, marts.auto_update_periods
-- @depends staging.patch_observations
-- @table Installs on production machines while they could install updates on their own (marts.auto_update_periods with status violation, unverified or excepted), up to $as_of: those installs bypassed testing and approval. An install is the first observation of the patch as installed (or installed pending reboot) on the machine, as in marts.authorization_install_findings, whose findings on the same machine and patch are listed.
-- @column vm_id: Canonical machine id.
-- @column patch_key: The patch.
-- @column installed_at: First observation of the patch as installed.
-- @column source: Source of that observation.
-- @column run_id: Its assessment / installation / correlation id.
-- @column setting: The period's judgement (marts.auto_update_periods.setting).
-- @column status: The period's status: violation, unverified or excepted.
-- @column exception_id: The exception covering the period, if any.
-- @column period_from: Start of the period (NULL when only the undated inventory is known).
-- @column install_findings: Rules of marts.authorization_install_findings on the same machine and patch (install_before_approval, production_install_without_test).
-- @column as_of: Evaluation date.
WITH
params AS (
    SELECT CAST($as_of AS DATE) AS as_of, timezone('UTC', (CAST($as_of AS DATE) + 1)::TIMESTAMP) AS cutoff
),
periods AS (
    SELECT * FROM marts.auto_update_periods WHERE status IN ('violation', 'unverified', 'excepted')
),
installs AS (
    SELECT o.vm_id, o.patch_key, min(o.observed_at) AS installed_at,
           arg_min(o.source, o.observed_at) AS source, arg_min(o.run_id, o.observed_at) AS run_id
    FROM staging.patch_observations AS o, params
    WHERE o.state IN ('installed', 'installed_pending_reboot') AND o.observed_at < params.cutoff
      AND o.vm_id IN (SELECT vm_id FROM periods)
    GROUP BY o.vm_id, o.patch_key
),
findings AS (
    SELECT vm_id, patch_key, list(rule ORDER BY rule) AS rules
    FROM marts.authorization_install_findings
    WHERE vm_id IS NOT NULL
    GROUP BY ALL
)
SELECT
    i.vm_id,
    i.patch_key,
    i.installed_at,
    i.source,
    i.run_id,
    p.setting,
    p.status,
    p.exception_id,
    p.valid_from AS period_from,
    f.rules AS install_findings,
    params.as_of
FROM installs AS i
JOIN periods AS p
  ON p.vm_id = i.vm_id
 AND (p.valid_from IS NULL OR i.installed_at >= p.valid_from)
 AND i.installed_at < p.valid_to
LEFT JOIN findings AS f ON f.vm_id = i.vm_id AND f.patch_key = i.patch_key
CROSS JOIN params
ORDER BY i.vm_id, i.installed_at, i.patch_key
