-- @summary The fixed-build rule per patch and product: installed OS build >= fixed build means fixed.
-- @group stage3_notification_channels
-- @depends staging.msrc_fixes
-- @table The fixed-build rule: for each patch and product, the build that contains the fix. A machine whose OS build (instanceView osVersion, e.g. 10.0.20348.2322) is at least fixed_build for its product has the fix, whether or not the KB itself is reported installed. Compare build_parts lists, or the four integer columns in order.
-- @column patch_key: The patch (KB digits or <package>_<version>).
-- @column kb: KB digits, NULL for non-KB fixes.
-- @column product_id: MSRC product id.
-- @column product: Product name.
-- @column fixed_build: Fixed build as MSRC gives it.
-- @column comparable: True when fixed_build is a dotted numeric version of 2 to 4 parts and the build columns are set.
-- @column build_parts: The version as a list of integers ([10,0,20348,2227]); compare with a machine's build list using >=.
-- @column build_major: First part (10 in 10.0.20348.2227).
-- @column build_minor: Second part (0).
-- @column build_number: Third part (20348), NULL when absent.
-- @column build_revision: Fourth part (2227, the update revision), NULL when absent.
SELECT DISTINCT
    patch_key,
    kb,
    product_id,
    product,
    fixed_build,
    fixed_build_parts IS NOT NULL AS comparable,
    fixed_build_parts AS build_parts,
    fixed_build_parts[1] AS build_major,
    fixed_build_parts[2] AS build_minor,
    fixed_build_parts[3] AS build_number,
    fixed_build_parts[4] AS build_revision
FROM staging.msrc_fixes
WHERE patch_key IS NOT NULL AND nullif(fixed_build, '-') IS NOT NULL
ORDER BY patch_key, product_id, fixed_build
