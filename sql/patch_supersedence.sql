-- @summary Direct supersedence edges: the later patch kb replaces superseded_kb.
-- @group stage3_notification_channels
-- @depends staging.msrc_fixes, staging.patch_observations
-- @table Direct supersedence edges between patches: the later patch `kb` replaces the earlier `superseded_kb` (MSRC "Supercedence" of a vendor fix). One row per edge, with the products it was stated for; edges of a later patch released after $as_of (its earliest MSRC release) are left out, as in marts.patch_catalog.
-- @column kb: KB digits of the superseding (later) patch.
-- @column superseded_kb: KB digits of the superseded (earlier) patch.
-- @column product_ids: MSRC product ids for which MSRC states the edge.
-- @column products: Product names for which MSRC states the edge.
-- @column release_month: Release month of the document that states the edge (earliest if several).
-- @column document_ids: MSRC documents that state the edge.
SELECT
    f.kb,
    s.superseded_kb,
    list(DISTINCT f.product_id ORDER BY f.product_id) AS product_ids,
    list(DISTINCT f.product ORDER BY f.product) FILTER (WHERE f.product IS NOT NULL) AS products,
    min(f.release_month) AS release_month,
    list(DISTINCT f.document_id ORDER BY f.document_id) AS document_ids
FROM staging.msrc_fixes AS f
CROSS JOIN unnest(f.supersedes) AS s(superseded_kb)
WHERE f.kb IS NOT NULL
    -- a successor released after the evaluation date did not exist then
    AND f.kb NOT IN (SELECT kb FROM staging.msrc_fixes WHERE kb IS NOT NULL GROUP BY kb
                     HAVING CAST(min(released_at) AS DATE) > CAST($as_of AS DATE))
GROUP BY f.kb, s.superseded_kb
ORDER BY f.kb, s.superseded_kb
