-- @report Share within SLA per framework for the evidence pack: remediation episodes decided under each framework and the share met (marts.time_to_patch, grain overall).
SELECT * FROM (
    SELECT 'internal' AS framework, decided_internal AS decided, within_sla_internal AS within_sla FROM marts.time_to_patch WHERE grain = 'overall'
    UNION ALL SELECT 'pci_dss', decided_pci, within_sla_pci FROM marts.time_to_patch WHERE grain = 'overall'
    UNION ALL SELECT 'fedramp', decided_fedramp, within_sla_fedramp FROM marts.time_to_patch WHERE grain = 'overall'
    UNION ALL SELECT 'cisa_kev', decided_kev, within_sla_kev FROM marts.time_to_patch WHERE grain = 'overall'
    UNION ALL SELECT 'cisa_bod2604', decided_bod2604, within_sla_bod2604 FROM marts.time_to_patch WHERE grain = 'overall'
)
