-- @summary Fix lineage per KB: the root KB shared by a patch and everything linked to it by supersedence.
-- @group stage3_notification_channels
-- @depends marts.patch_supersedence, staging.msrc_fixes
-- @table Fix lineage of every KB: the patches connected by supersedence (in either direction) form one lineage, so a patch, everything it supersedes and everything that supersedes it share one lineage_id. The lineage_id is the lineage's root: its earliest-released KB (KBs known only as superseded, released before anything ingested, count as earliest; ties by the smaller KB number).
-- @column kb: KB digits.
-- @column lineage_id: KB digits of the lineage root (earliest KB of the lineage).
-- @column latest_kb: KB digits of the latest-released KB of the lineage (its current tip; ties by the larger KB number).
-- @column lineage_size: Number of KBs in the lineage.
-- @column released_at: Release of kb (earliest MSRC document naming it; NULL when known only as superseded).
WITH RECURSIVE
edges AS (
    SELECT kb, superseded_kb FROM marts.patch_supersedence WHERE kb <> superseded_kb
),
released AS (
    SELECT kb, min(coalesce(released_at, release_month::TIMESTAMPTZ)) AS released_at
    FROM staging.msrc_fixes
    WHERE kb IS NOT NULL
    GROUP BY kb
),
nodes AS (
    SELECT kb FROM released
    UNION
    SELECT superseded_kb FROM edges
),
undirected AS (
    SELECT kb AS a, superseded_kb AS b FROM edges
    UNION
    SELECT superseded_kb, kb FROM edges
),
reach(kb, other) USING KEY (kb, other) AS (
    SELECT kb, kb FROM nodes
    UNION
    SELECT r.kb, u.b
    FROM reach AS r
    JOIN undirected AS u ON u.a = r.other
    WHERE NOT EXISTS (SELECT 1 FROM recurring.reach AS x WHERE x.kb = r.kb AND x.other = u.b)
),
ordered AS (
    SELECT
        r.kb,
        r.other,
        coalesce(rel.released_at, '-infinity'::TIMESTAMPTZ) AS other_released,
        coalesce(TRY_CAST(r.other AS BIGINT), 0) AS other_number
    FROM reach AS r
    LEFT JOIN released AS rel ON rel.kb = r.other
)
SELECT
    o.kb,
    arg_min(o.other, (o.other_released, o.other_number, o.other)) AS lineage_id,
    arg_max(o.other, (o.other_released, o.other_number, o.other)) AS latest_kb,
    count(*) AS lineage_size,
    any_value(rel.released_at) AS released_at
FROM ordered AS o
LEFT JOIN released AS rel ON rel.kb = o.kb
GROUP BY o.kb
ORDER BY o.kb
