-- @summary Transitive supersedence (recursive, cycle-safe) with the shortest chain depth.
-- @group stage3_notification_channels
-- @depends marts.patch_supersedence
-- @table Transitive supersedence: every patch `kb` and each earlier patch it replaces directly or through a chain of later patches, with the shortest chain length. A machine with `kb` installed is covered for `superseded_kb`. Cycles in the data terminate (each pair is visited once) and are flagged.
-- @column kb: KB digits of the superseding patch.
-- @column superseded_kb: KB digits of a patch that kb replaces, directly (depth 1) or transitively.
-- @column depth: Length of the shortest supersedence chain from kb to superseded_kb.
-- @column in_cycle: True when superseded_kb also (transitively) supersedes kb: a cycle in the MSRC data, reported by the supersedence_cycles check.
WITH RECURSIVE
edges AS (
    SELECT kb, superseded_kb FROM marts.patch_supersedence
),
-- Breadth first, one row per (kb, superseded_kb): a pair already reached is never extended again,
-- so the walk ends on cycles and keeps the shortest depth.
walk(kb, superseded_kb, depth) USING KEY (kb, superseded_kb) AS (
    SELECT kb, superseded_kb, 1 FROM edges
    UNION
    SELECT w.kb, e.superseded_kb, w.depth + 1
    FROM walk AS w
    JOIN edges AS e ON e.kb = w.superseded_kb
    WHERE NOT EXISTS (
        SELECT 1 FROM recurring.walk AS r WHERE r.kb = w.kb AND r.superseded_kb = e.superseded_kb
    )
),
pairs AS (
    SELECT * FROM walk
)
SELECT
    p.kb,
    p.superseded_kb,
    p.depth,
    EXISTS (SELECT 1 FROM pairs AS b WHERE b.kb = p.superseded_kb AND b.superseded_kb = p.kb) AS in_cycle
FROM pairs AS p
WHERE p.kb <> p.superseded_kb
ORDER BY p.kb, p.superseded_kb
