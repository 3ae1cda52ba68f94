-- @table The bulletin channels (stage 3 notification and repository channels): one row per configured channel (msrc, kev, epss, osv, vulnrichment) with its last successful ingest, what it holds, its newest document and whether it is stale as of $as_of. Stale means no data, or more days since the newest document than the channel's threshold: msrc 35 days since the newest CurrentReleaseDate, kev 7 days since dateReleased, epss 3 days since score_date, osv 30 days since the newest advisory modification, vulnrichment 30 days since the newest CISA ADP update. For msrc, the months of the /updates index (live fetch, or <estate>/bulletins/msrc/updates.json) released but not ingested, or ingested at an older CurrentReleaseDate than the index gives.
-- @column channel: msrc (MSRC Security Update Guide CVRF), kev (CISA KEV), epss (FIRST EPSS), osv (OSV advisories for non-Microsoft software), vulnrichment (CISA Vulnrichment SSVC decisions).
-- @column source: What the channel is.
-- @column last_ingest_at: End of the last successful ingest of the channel (UTC), whether or not it brought anything new; NULL when never ingested.
-- @column last_ingest_run: Dagster run id of that ingest.
-- @column last_new_data_at: Last successful ingest that brought new or changed documents (UTC).
-- @column documents_held: msrc month documents, kev catalog snapshots, epss score days, osv advisories, vulnrichment CVE records held.
-- @column rows_held: msrc fix rows, kev entries (all snapshots), epss scores (all days), osv affected-package rows, vulnrichment records with an SSVC decision.
-- @column newest_document: Id of the newest document: msrc document id, kev catalogVersion, epss score date, osv advisory id, vulnrichment CVE.
-- @column newest_document_at: Its date: msrc CurrentReleaseDate, kev dateReleased, epss score_date, osv modified, vulnrichment CISA ADP dateUpdated (else the record's) (UTC).
-- @column age_days: Days from newest_document_at to the evaluation date.
-- @column stale_after_days: The channel's threshold in days.
-- @column stale: True when the channel holds nothing or age_days exceeds stale_after_days.
-- @column status: fresh, stale, or empty (nothing held).
-- @column index_fetched_at: msrc only: when the /updates index used was read (UTC); NULL when no index is held.
-- @column pending_documents: msrc only: ids in the index (released on or before the evaluation date, no Mariner pseudo-months, within the ingested span or the last $msrc_months months) whose document is not ingested or is ingested at an older CurrentReleaseDate. NULL without an index.
-- @column pending_count: Number of pending_documents (NULL without an index).
-- @column as_of: The evaluation date.
WITH
thresholds(channel, source, stale_after_days, position) AS (
    VALUES
        ('msrc', 'MSRC Security Update Guide (CVRF API v3.0)', 35, 1),
        ('kev', 'CISA Known Exploited Vulnerabilities catalog', 7, 2),
        ('epss', 'FIRST EPSS daily scores', 3, 3),
        ('osv', 'OSV advisories (non-Microsoft software)', 30, 4),
        ('vulnrichment', 'CISA Vulnrichment (SSVC decision points per CVE)', 30, 5)
),
configured AS (
    SELECT t.* FROM thresholds AS t WHERE list_contains($channels, t.channel)
),
ingests AS (
    SELECT
        channel,
        max(ingested_at) AS last_ingest_at,
        arg_max(ingest_run, ingested_at) AS last_ingest_run,
        max(ingested_at) FILTER (WHERE documents_ingested > 0) AS last_new_data_at
    FROM raw.bulletin_ingest_log
    GROUP BY channel
),
held AS (
    SELECT 'msrc' AS channel,
           (SELECT count(*) FROM raw.msrc_documents) AS documents_held,
           (SELECT count(*) FROM raw.msrc_fixes) AS rows_held,
           (SELECT arg_max(document_id, (current_release_at, document_id)) FROM raw.msrc_documents) AS newest_document,
           (SELECT max(current_release_at) FROM raw.msrc_documents) AS newest_document_at
    UNION ALL
    SELECT 'kev',
           (SELECT count(DISTINCT catalog_version) FROM raw.kev_vulnerabilities),
           (SELECT count(*) FROM raw.kev_vulnerabilities),
           (SELECT arg_max(catalog_version, date_released) FROM raw.kev_vulnerabilities),
           (SELECT max(date_released) FROM raw.kev_vulnerabilities)
    UNION ALL
    SELECT 'epss',
           (SELECT count(DISTINCT score_date) FROM raw.epss_scores),
           (SELECT count(*) FROM raw.epss_scores),
           (SELECT CAST(max(score_date) AS VARCHAR) FROM raw.epss_scores),
           (SELECT CAST(max(score_date) AS TIMESTAMPTZ) FROM raw.epss_scores)
    UNION ALL
    SELECT 'osv',
           (SELECT count(*) FROM raw.osv_advisories),
           (SELECT count(*) FROM raw.osv_affected),
           (SELECT arg_max(advisory_id, (modified_at, advisory_id)) FROM raw.osv_advisories),
           (SELECT max(modified_at) FROM raw.osv_advisories)
    UNION ALL
    SELECT 'vulnrichment',
           (SELECT count(*) FROM raw.vulnrichment_ssvc),
           (SELECT count(*) FROM raw.vulnrichment_ssvc WHERE automatable IS NOT NULL OR technical_impact IS NOT NULL),
           (SELECT arg_max(cve, (coalesce(adp_updated_at, record_updated_at), cve)) FROM raw.vulnrichment_ssvc),
           (SELECT max(coalesce(adp_updated_at, record_updated_at)) FROM raw.vulnrichment_ssvc)
),
span AS (
    SELECT least(
        (SELECT min(initial_release_at) FROM raw.msrc_documents WHERE document_kind = 'security_update'),
        CAST($as_of AS TIMESTAMPTZ) - to_months(CAST($msrc_months AS INTEGER))
    ) AS since
),
index_in_scope AS (
    SELECT i.*
    FROM raw.msrc_index AS i, span
    WHERE coalesce(i.document_title, '') <> 'Mariner Release Notes'
      AND NOT list_contains($known_empty, i.document_id)
      AND CAST(i.initial_release_at AS DATE) <= $as_of
      AND i.initial_release_at >= span.since
),
pending AS (
    SELECT
        'msrc' AS channel,
        (SELECT max(fetched_at) FROM raw.msrc_index) AS index_fetched_at,
        list(i.document_id ORDER BY i.initial_release_at, i.document_id)
            FILTER (WHERE d.document_id IS NULL OR d.current_release_at < i.current_release_at)
            AS pending_documents
    FROM index_in_scope AS i
    LEFT JOIN raw.msrc_documents AS d ON lower(d.document_id) = lower(i.document_id)
    HAVING (SELECT count(*) FROM raw.msrc_index) > 0
)
SELECT
    c.channel,
    c.source,
    g.last_ingest_at,
    g.last_ingest_run,
    g.last_new_data_at,
    h.documents_held,
    h.rows_held,
    h.newest_document,
    h.newest_document_at,
    CAST($as_of AS DATE) - CAST(h.newest_document_at AS DATE) AS age_days,
    c.stale_after_days,
    h.newest_document_at IS NULL
        OR CAST($as_of AS DATE) - CAST(h.newest_document_at AS DATE) > c.stale_after_days AS stale,
    CASE
        WHEN h.newest_document_at IS NULL THEN 'empty'
        WHEN CAST($as_of AS DATE) - CAST(h.newest_document_at AS DATE) > c.stale_after_days THEN 'stale'
        ELSE 'fresh'
    END AS status,
    p.index_fetched_at,
    CASE WHEN p.channel IS NOT NULL THEN coalesce(p.pending_documents, []::VARCHAR[]) END AS pending_documents,
    CASE WHEN p.channel IS NOT NULL THEN len(coalesce(p.pending_documents, []::VARCHAR[])) END AS pending_count,
    CAST($as_of AS DATE) AS as_of
FROM configured AS c
JOIN held AS h USING (channel)
LEFT JOIN ingests AS g USING (channel)
LEFT JOIN pending AS p USING (channel)
ORDER BY c.position
