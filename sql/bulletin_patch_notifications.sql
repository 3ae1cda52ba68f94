-- @table Notices of new patches that apply to the estate: one row per notice (from the append-only ledger.notifications_sent), with what was notified and when, and the machines it applies to now. A patch is notified once when new: the run after the bulletin ingest that brought it, when it applies to a machine (staging.patch_applicability) and was released in the lookback window; and once more if one of its CVEs enters CISA KEV after that notice.
-- @column notification_id: Stable id of the notice: first 16 hex digits of sha256 of the patch key (new), or of "<patch key>|entered_kev".
-- @column reason: new (first notice of the patch) or entered_kev (one of its CVEs entered KEV after its first notice).
-- @column seq: Position in the ledger (1 = first notice ever).
-- @column patch_key: The patch (KB digits or <package>_<version>).
-- @column kb: KB digits, NULL for non-KB patches.
-- @column title: Catalog title at notification time.
-- @column sources: Bulletins that listed it (msrc, osv).
-- @column severity: Highest severity (MSRC scale) at notification time.
-- @column max_cvss: Highest CVSS base score at notification time.
-- @column exploited: MSRC reported one of its CVEs exploited at notification time.
-- @column in_kev: One of its CVEs was in CISA KEV at notification time.
-- @column kev_due_date: Earliest KEV due date among its CVEs at notification time.
-- @column max_epss: Highest EPSS probability at notification time.
-- @column cves: The CVEs it fixes.
-- @column products: Products or packages found in the estate.
-- @column affected_machines: Machines it applied to at notification time.
-- @column affected_machines_now: Machines it applies to now (staging.patch_applicability); 0 when none.
-- @column released_at: Release of the patch.
-- @column notified_at: When the notice was recorded (UTC).
-- @column notification_run: Dagster run that recorded it.
-- @column notification_as_of: Evaluation date of that run.
-- @column delivery: webhook (POSTed to PATCHLEDGER_NOTIFY_WEBHOOK) or warehouse (recorded only).
-- @column new_in_this_run: True for the notices recorded by the run that built this table.
WITH
now_applicable AS (
    SELECT patch_key, count(DISTINCT vm_id) AS machines
    FROM staging.patch_applicability
    GROUP BY patch_key
)
SELECT
    n.notification_id,
    coalesce(json_extract_string(n.content, '$.reason'), 'new') AS reason,
    n.seq,
    n.patch_key,
    n.kb,
    n.title,
    n.sources,
    n.severity,
    n.max_cvss,
    n.exploited,
    n.in_kev,
    n.kev_due_date,
    n.max_epss,
    n.cves,
    n.products,
    n.affected_machines,
    coalesce(a.machines, 0) AS affected_machines_now,
    n.released_at,
    n.notified_at,
    n.run_id AS notification_run,
    n.as_of AS notification_as_of,
    n.delivery,
    n.run_id = $run_id AS new_in_this_run
FROM ledger.notifications_sent AS n
LEFT JOIN now_applicable AS a USING (patch_key)
ORDER BY n.seq
