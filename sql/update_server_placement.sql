-- @summary Recommended update-server locations per subscription and region, by the seed's hybrid
-- @summary rules (servers on both sides when each holds at least 10 % of the machines, else only on
-- @summary the majority side), the estimated monthly traffic across the Azure / on-premises boundary,
-- @summary and the WSUS servers the agents actually report beside it.
-- @group stage4_patch_management_system
-- @depends marts.vm_inventory, staging.patch_observations
-- @table Recommended update-server placement (stage 4 of the process), one row per site: each Azure subscription and region with machines, and on-premises (Arc and non-Azure machines). The rules are the seed's: cloud only, a server per subscription and region; hybrid where each side holds at least 10 % of the machines, servers on both sides; where one side holds under 10 %, a server only on the majority side, which serves the minority across the boundary. The actual topology (the WSUS servers the agents report) stands beside it.
-- @column site: azure:<subscription>/<region>, or on-premises.
-- @column site_kind: azure or on_premises.
-- @column subscription_id: Subscription of an Azure site.
-- @column location: Region of an Azure site.
-- @column machines: Machines at the site.
-- @column windows_machines: Windows machines at the site.
-- @column linux_machines: Linux machines at the site.
-- @column estate_on_premises_share: Share of all machines that are on premises (Arc and non-Azure).
-- @column scenario: cloud_only, on_premises_only, hybrid, azure_majority_only (on-premises under 10 %) or on_premises_majority_only (Azure under 10 %).
-- @column recommend_update_server: True when the site should have its own update server.
-- @column served_from: Where the site's machines get their updates: its own server, or the majority side across the boundary.
-- @column cross_boundary_gb_per_month: Estimated monthly update traffic across the Azure / on-premises boundary for this site (machines served across it times the monthly payload per OS).
-- @column actual_update_servers: Update (WSUS) servers the site's agents report in Log Analytics UpdateSummary.
-- @column machines_reporting_update_server: Machines at the site that report an update server.
-- @column rationale: The rule that gave the recommendation.
-- @column as_of: Evaluation date.
WITH machines AS (
    SELECT
        vm_id,
        os_type,
        wsus_server,
        CASE WHEN machine_kind = 'azure_vm' THEN 'azure' ELSE 'on_premises' END AS site_kind,
        CASE WHEN machine_kind = 'azure_vm'
             THEN 'azure:' || coalesce(subscription_id, '?') || '/' || coalesce(location, '?')
             ELSE 'on-premises' END AS site,
        CASE WHEN machine_kind = 'azure_vm' THEN subscription_id END AS subscription_id,
        CASE WHEN machine_kind = 'azure_vm' THEN location END AS location
    FROM marts.vm_inventory
),
estate AS (
    SELECT
        count(*) AS total,
        coalesce(count(*) FILTER (WHERE site_kind = 'on_premises') / nullif(count(*), 0), 0) AS onprem_share
    FROM machines
),
scenario AS (
    SELECT
        onprem_share,
        CASE
            WHEN onprem_share = 0 THEN 'cloud_only'
            WHEN onprem_share = 1 THEN 'on_premises_only'
            WHEN onprem_share < $minority_share THEN 'azure_majority_only'
            WHEN 1 - onprem_share < $minority_share THEN 'on_premises_majority_only'
            ELSE 'hybrid'
        END AS scenario
    FROM estate
),
sites AS (
    SELECT
        site,
        any_value(site_kind) AS site_kind,
        any_value(subscription_id) AS subscription_id,
        any_value(location) AS location,
        count(*) AS machines,
        count(*) FILTER (WHERE os_type = 'Windows') AS windows_machines,
        count(*) FILTER (WHERE os_type = 'Linux') AS linux_machines,
        list(DISTINCT wsus_server ORDER BY wsus_server) FILTER (WHERE wsus_server IS NOT NULL AND wsus_server <> '') AS actual_update_servers,
        count(*) FILTER (WHERE wsus_server IS NOT NULL AND wsus_server <> '') AS machines_reporting_update_server
    FROM machines
    GROUP BY site
),
decided AS (
    SELECT
        s.*,
        sc.onprem_share,
        sc.scenario,
        CASE sc.scenario
            WHEN 'azure_majority_only' THEN s.site_kind = 'azure'
            WHEN 'on_premises_majority_only' THEN s.site_kind = 'on_premises'
            ELSE true
        END AS recommend_update_server
    FROM sites AS s, scenario AS sc
)
SELECT
    site,
    site_kind,
    subscription_id,
    location,
    machines,
    windows_machines,
    linux_machines,
    round(onprem_share, 4) AS estate_on_premises_share,
    scenario,
    recommend_update_server,
    CASE
        WHEN recommend_update_server THEN 'own update server'
        WHEN site_kind = 'on_premises' THEN 'Azure update servers, across the boundary'
        ELSE 'on-premises update server, across the boundary'
    END AS served_from,
    CASE WHEN recommend_update_server THEN 0.0
         ELSE round((windows_machines * $windows_monthly_mb + linux_machines * $linux_monthly_mb) / 1024.0, 1)
    END AS cross_boundary_gb_per_month,
    coalesce(actual_update_servers, []::VARCHAR[]) AS actual_update_servers,
    machines_reporting_update_server,
    CASE scenario
        WHEN 'cloud_only' THEN 'All machines are on Azure: one update server per subscription and region.'
        WHEN 'on_premises_only' THEN 'All machines are on premises: update servers on premises only.'
        WHEN 'hybrid' THEN 'Each side holds at least ' || ($minority_share * 100)::INTEGER || ' % of the machines: update servers on both sides, no distribution across the boundary.'
        WHEN 'azure_majority_only' THEN 'On-premises machines are under ' || ($minority_share * 100)::INTEGER || ' %: servers on Azure only; on-premises machines are served across the boundary.'
        ELSE 'Azure machines are under ' || ($minority_share * 100)::INTEGER || ' %: servers on premises only; Azure machines are served across the boundary.'
    END AS rationale,
    $as_of::DATE AS as_of
FROM decided
ORDER BY site_kind, site
