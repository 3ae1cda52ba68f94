-- @summary What marts.vm_config_history's intervals up to $cutoff were built from: the digest of
-- @summary its SQL ($sql), the identity mapping, the UpdateSummary records and inventory snapshots
-- @summary before $cutoff, and the table's row count. Equal to the hash kept at the last build,
-- @summary the table may be merged from that date on (assets/inventory.py).
SELECT
    hash(
        $sql,
        (SELECT sum(hash(la_key, vm_id)) FROM staging.vm_la_machines),
        (
            SELECT
                sum(hash(
                    timegenerated, _resourceid, resourceid, vmuuid, sourcecomputerid, computer, wsusserver,
                    windowsupdatesetting, osversion
                ))
            FROM raw.la_update_summary
            WHERE timegenerated < $cutoff
        ),
        (SELECT sum(hash(s)) FROM staging.vm_snapshots AS s WHERE s.captured_at IS NULL OR s.captured_at < $cutoff),
        (SELECT count(*) FROM marts.vm_config_history)
    ) AS basis
