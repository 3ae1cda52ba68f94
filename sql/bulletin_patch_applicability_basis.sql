-- @summary What staging.patch_applicability reads of the tables that change every day: each
-- @summary machine's OS name and version (marts.vm_inventory) and the packages seen on it
-- @summary (marts.vm_patch_state). With the same SQL and fix tables, the same value gives the same
-- @summary rows: the table is not rebuilt (assets/notifications.py).
SELECT
    hash(
        (SELECT count(*) FROM marts.vm_inventory),
        (SELECT sum(hash(vm_id, os_name, os_version)) FROM marts.vm_inventory),
        (
            SELECT sum(hash(vm_id, package))
            FROM (
                SELECT DISTINCT vm_id, split_part(patch_key, '_', 1) AS package
                FROM marts.vm_patch_state
                WHERE kb IS NULL AND contains(patch_key, '_')
            )
        )
    ) AS basis
