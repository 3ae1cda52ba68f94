-- @summary CISA BOD 26-04 tier per patch and machine exposure: each CVE decided on KEV, exposure and Vulnrichment's Automatable and Technical Impact (policy defaults where a CVE has none).
-- @group stage3_notification_channels
-- @depends marts.patch_cves, staging.sla_policy
-- @table CISA BOD 26-04 tier of each catalog patch, for a machine that is not and one that is internet-exposed: one row per patch_key and internet_exposed. Each CVE the patch fixes (marts.patch_cves) is decided on its own four inputs: in KEV as of the evaluation date, the machine's internet exposure, and CISA Vulnrichment's SSVC Automatable and Technical Impact for the CVE; where the CVE has no Vulnrichment decision the policy's defaults (staging.sla_policy default_automatable, default_technical_impact) stand in. The patch takes its most urgent CVE's outcome (fewest days; next_upgrade last; forensic triage first among equal days; then the lower CVE id).
-- @column patch_key: The patch (KB digits or <package>_<version>).
-- @column internet_exposed: The machine's internet-exposed tag this row is for.
-- @column tier: BOD 26-04 tier: 3d_forensic_triage, 3d, 14d, 60d or next_upgrade.
-- @column days: Days to remediate from the clock start; NULL for next_upgrade.
-- @column forensic_triage: The combination also requires forensic triage.
-- @column rule: The decision-table row reached (KEV, internet-exposed, automatable, technical impact).
-- @column decisive_cve: The CVE whose outcome the patch takes.
-- @column in_kev: The decisive CVE is in KEV as of the evaluation date.
-- @column automatable: SSVC Automatable used for the decisive CVE (Vulnrichment, else the policy default).
-- @column technical_impact: SSVC Technical Impact used for the decisive CVE (Vulnrichment, else the policy default).
-- @column ssvc_source: vulnrichment when both SSVC inputs of the decisive CVE came from Vulnrichment, policy_default when either is the policy's default.
-- @column cve_count: CVEs the patch fixes.
-- @column cves_defaulted: Of those, CVEs without a Vulnrichment decision (decided on the policy defaults).
WITH
rules AS (
    SELECT * FROM staging.sla_policy WHERE framework = 'cisa_bod2604'
),
defaults AS (
    SELECT any_value(default_automatable) AS automatable, any_value(default_technical_impact) AS technical_impact
    FROM rules
),
cves AS (
    SELECT
        patch_key,
        cve,
        bool_or(in_kev) AS in_kev,
        any_value(ssvc_automatable) AS automatable,
        any_value(ssvc_technical_impact) AS technical_impact
    FROM marts.patch_cves
    GROUP BY patch_key, cve
),
exposures(internet_exposed) AS (
    VALUES (false), (true)
),
inputs AS (
    SELECT
        c.patch_key,
        c.cve,
        x.internet_exposed,
        c.in_kev,
        coalesce(c.automatable, d.automatable) AS automatable,
        coalesce(c.technical_impact, d.technical_impact) AS technical_impact,
        c.automatable IS NULL OR c.technical_impact IS NULL AS defaulted
    FROM cves AS c
    CROSS JOIN exposures AS x
    CROSS JOIN defaults AS d
),
decided AS (
    SELECT
        i.*,
        r.tier,
        r.days,
        r.forensic_triage,
        r.scope AS rule,
        -- Most urgent first: fewest days (next_upgrade has none), forensic triage, CVE id.
        (coalesce(r.days, 2147483647), NOT r.forensic_triage, i.cve) AS urgency
    FROM inputs AS i
    JOIN rules AS r
      ON r.in_kev = i.in_kev
     AND r.internet_exposed = i.internet_exposed
     AND r.automatable = i.automatable
     AND r.technical_impact = i.technical_impact
)
SELECT
    patch_key,
    internet_exposed,
    arg_min(tier, urgency) AS tier,
    arg_min(days, urgency) AS days,
    arg_min(forensic_triage, urgency) AS forensic_triage,
    arg_min(rule, urgency) AS rule,
    arg_min(cve, urgency) AS decisive_cve,
    arg_min(in_kev, urgency) AS in_kev,
    arg_min(automatable, urgency) AS automatable,
    arg_min(technical_impact, urgency) AS technical_impact,
    CASE WHEN arg_min(defaulted, urgency) THEN 'policy_default' ELSE 'vulnrichment' END AS ssvc_source,
    count(*)::INTEGER AS cve_count,
    count(*) FILTER (WHERE defaulted)::INTEGER AS cves_defaulted
FROM decided
GROUP BY patch_key, internet_exposed
ORDER BY patch_key, internet_exposed
