-- @report Assessment coverage of the evidence pack: machines of marts.vm_inventory by kind, assessed within the freshness window, stale (assessed, but too long ago) and never assessed.
SELECT machine_kind,
       count(*) FILTER (WHERE coverage_status = 'assessed') AS assessed,
       count(*) FILTER (WHERE coverage_status = 'unknown_stale' AND last_assessed_at IS NOT NULL) AS stale,
       count(*) FILTER (WHERE last_assessed_at IS NULL) AS never_assessed
FROM marts.vm_inventory
GROUP BY machine_kind
ORDER BY CASE machine_kind WHEN 'azure_vm' THEN 0 WHEN 'arc' THEN 1 ELSE 2 END
