-- @table The (ecosystem, package) pairs a live OSV fetch asks /v1/querybatch about: every package seen on a Linux machine (staging.patch_observations, a <package>_<version> patch in any state) with the machine's OSV ecosystem from its OS name and version: Ubuntu:<release>[:LTS] (LTS for even years' .04), Debian:<major>, Azure Linux:<major>, Mariner:<major> (CBL-Mariner), Red Hat; other distributions are not queried.
-- @column ecosystem: OSV ecosystem (Ubuntu:22.04:LTS, Debian:12, ...).
-- @column package: Package name (the part of the patch key before the first underscore).
WITH
vms AS (
    SELECT vm_id, lower(concat_ws(' ', os_name, os_version)) AS os_full
    FROM marts.vm_inventory
    WHERE lower(coalesce(os_type, '')) = 'linux'
),
ecosystems AS (
    SELECT
        vm_id,
        CASE
            WHEN contains(os_full, 'ubuntu') AND regexp_matches(os_full, '\d{2}\.\d{2}') THEN
                'Ubuntu:' || regexp_extract(os_full, '(\d{2}\.\d{2})', 1)
                || CASE WHEN regexp_extract(os_full, '(\d{2})\.04', 1) <> ''
                         AND CAST(regexp_extract(os_full, '(\d{2})\.04', 1) AS INTEGER) % 2 = 0
                        THEN ':LTS' ELSE '' END
            WHEN contains(os_full, 'debian') AND regexp_matches(os_full, '\d+') THEN
                'Debian:' || regexp_extract(os_full, '(\d+)', 1)
            WHEN contains(os_full, 'azure linux') AND regexp_matches(os_full, '\d+') THEN
                'Azure Linux:' || regexp_extract(os_full, '(\d+)', 1)
            WHEN contains(os_full, 'mariner') AND regexp_matches(os_full, '\d+') THEN
                'Mariner:' || regexp_extract(os_full, '(\d+)', 1)
            WHEN contains(os_full, 'red hat') OR contains(os_full, 'rhel') THEN 'Red Hat'
        END AS ecosystem
    FROM vms
),
packages AS (
    SELECT DISTINCT vm_id, split_part(patch_key, '_', 1) AS package
    FROM staging.patch_observations
    WHERE kb IS NULL AND contains(patch_key, '_')
)
SELECT DISTINCT e.ecosystem, p.package
FROM packages AS p
JOIN ecosystems AS e USING (vm_id)
WHERE e.ecosystem IS NOT NULL AND p.package <> ''
ORDER BY e.ecosystem, p.package
