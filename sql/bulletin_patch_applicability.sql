-- @table Which machines of the estate each catalog patch applies to: one row per patch and machine. MSRC patches apply to a machine whose marts.vm_inventory os_name names the fixed product (product name without its parenthesised installation type and without "for x64-based Systems", matched case-insensitively inside os_name; "Windows Server 2012" does not match an "R2" machine; a component "... on Windows Server 2022" matches on the OS it names). Windows client versions (Windows 10 Version 22H2) are not in os_name and match only the version-less product. OSV patches apply to a machine on which the package was observed up to the evaluation date (marts.vm_patch_state: any observation of a <package>_<version> patch, any state) and whose OS (os_name and os_version) names the advisory's distribution and, when the ecosystem has one, its release (Ubuntu:22.04:LTS needs "ubuntu" and "22.04").
-- @column patch_key: The patch (KB digits or <package>_<version>).
-- @column kb: KB digits, NULL for non-KB patches.
-- @column vm_id: Canonical machine id.
-- @column source: Bulletin the patch comes from: msrc or osv.
-- @column matched_on: os_name (MSRC product found in the machine's OS name) or package (package observed on the machine).
-- @column matched_product: The MSRC product name, or <package> on <ecosystem>, that matched (the first by name when several did).
WITH
vms AS (
    SELECT
        vm_id,
        lower(coalesce(os_name, '')) AS os_norm,
        lower(concat_ws(' ', os_name, os_version)) AS os_full
    FROM marts.vm_inventory
),
msrc_products AS (
    SELECT DISTINCT
        patch_key,
        kb,
        product,
        trim(regexp_replace(regexp_replace(lower(product), '\s*\([^)]*\)', '', 'g'),
                            '\s+for\s+.*$', '')) AS name_norm
    FROM staging.msrc_fixes
    WHERE patch_key IS NOT NULL AND product IS NOT NULL
),
-- Components installed on an OS ("Microsoft .NET Framework 4.8 on Windows Server 2022") match
-- on the OS they name.
msrc_targets AS (
    SELECT
        patch_key, kb, product,
        coalesce(nullif(regexp_extract(name_norm, '\son (windows .+)$', 1), ''), name_norm) AS product_norm
    FROM msrc_products
),
-- Names are matched once per distinct (product, OS name) pair, then joined back by equality.
name_matches AS (
    SELECT p.product_norm, o.os_norm
    FROM (SELECT DISTINCT product_norm FROM msrc_targets WHERE length(product_norm) > 0) AS p
    JOIN (SELECT DISTINCT os_norm FROM vms) AS o
      ON contains(o.os_norm, p.product_norm)
     AND (contains(p.product_norm, ' r2') OR NOT contains(o.os_norm, p.product_norm || ' r2'))
),
msrc_matches AS (
    SELECT p.patch_key, p.kb, v.vm_id, 'msrc' AS source, 'os_name' AS matched_on, p.product AS matched_product
    FROM msrc_targets AS p
    JOIN name_matches AS m USING (product_norm)
    JOIN vms AS v USING (os_norm)
),
-- marts.vm_patch_state holds every (machine, patch) ever observed up to the evaluation date, once:
-- the same packages as every observation of staging.patch_observations, without reading them all.
observed_packages AS (
    SELECT DISTINCT vm_id, split_part(patch_key, '_', 1) AS package
    FROM marts.vm_patch_state
    WHERE kb IS NULL AND contains(patch_key, '_')
),
osv_patches AS (
    SELECT DISTINCT patch_key, package, ecosystem, lower(distribution) AS distribution, distribution_release
    FROM staging.osv_fixes
    WHERE patch_key IS NOT NULL
),
-- As for MSRC names: the OS is matched once per distinct (distribution, release, OS) triple, not
-- once per patch and machine.
release_matches AS (
    SELECT r.distribution, r.distribution_release, o.os_full
    FROM (SELECT DISTINCT distribution, distribution_release FROM osv_patches) AS r
    JOIN (SELECT DISTINCT os_full FROM vms) AS o
      ON contains(o.os_full, r.distribution)
     AND (r.distribution_release IS NULL
          OR regexp_matches(o.os_full, '(^|[^0-9.])' || replace(r.distribution_release, '.', '\.') || '([^0-9]|$)'))
),
osv_matches AS (
    SELECT
        o.patch_key, NULL::VARCHAR AS kb, v.vm_id, 'osv' AS source, 'package' AS matched_on,
        o.package || ' on ' || o.ecosystem AS matched_product
    FROM osv_patches AS o
    JOIN observed_packages AS k ON k.package = o.package
    JOIN vms AS v ON v.vm_id = k.vm_id
    JOIN release_matches AS m
      ON m.os_full = v.os_full AND m.distribution = o.distribution
     AND m.distribution_release IS NOT DISTINCT FROM o.distribution_release
),
matches AS (
    SELECT * FROM msrc_matches
    UNION ALL
    SELECT * FROM osv_matches
)
SELECT
    patch_key,
    any_value(kb) AS kb,
    vm_id,
    source,
    min(matched_on) AS matched_on,
    min(matched_product) AS matched_product
FROM matches
GROUP BY patch_key, vm_id, source
ORDER BY patch_key, vm_id, source
