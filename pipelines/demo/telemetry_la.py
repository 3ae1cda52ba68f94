"""Log Analytics exports of the demo: Update (daily portal CSV), UpdateSummary and UpdateRunProgress."""

from __future__ import annotations

from pathlib import Path

import duckdb

from .period import DAY_US, Period
from .telemetry_sql import copy_all

_LA_HOST = """
    v.computer AS Computer,
    CASE WHEN v.kind = 'azure_vm' THEN 'Azure' ELSE 'Non-Azure' END AS ComputerEnvironment,
    v.agent_guid AS SourceComputerId,
    CASE WHEN v.os_type = 'Linux' THEN swapped(v.vm_guid) ELSE v.vm_guid END AS VMUUID,
    nullif(v.arm_id, '') AS ResourceId,
    nullif(lower(v.arm_id), '') AS _ResourceId,
    nullif(v.subscription, '') AS SubscriptionId,
    nullif(v.resource_group, '') AS ResourceGroup,
    CASE WHEN v.kind = 'azure_vm' THEN 'Microsoft.Compute' END AS ResourceProvider,
    CASE WHEN v.kind = 'azure_vm' THEN v.name END AS Resource,
    CASE WHEN v.kind = 'azure_vm' THEN 'virtualMachines' END AS ResourceType,
    'contoso-la-weu' AS ManagementGroupName
"""


def write_log_analytics(con: duckdb.DuckDBPyConnection, root: Path, period: Period) -> dict[str, int]:
    folder = root / "log_analytics"
    folder.mkdir(parents=True, exist_ok=True)
    os_name = """CASE v.product_id WHEN '10816' THEN 'Windows Server 2016 Datacenter'
        WHEN '11571' THEN 'Windows Server 2019 Datacenter' WHEN '11923' THEN 'Windows Server 2022 Datacenter: Azure Edition'
        WHEN '12436' THEN 'Windows Server 2025 Datacenter: Azure Edition' ELSE 'Ubuntu' END"""
    os_version = """CASE v.product_id WHEN '10816' THEN '10.0.14393' WHEN '11571' THEN '10.0.17763'
        WHEN '11923' THEN '10.0.20348' WHEN '12436' THEN '10.0.26100' ELSE '22.04' END"""
    # The first header carries a UTF-8 byte-order mark, as some portal exports do.
    copy_all(con, [
        f"""
            COPY (
              SELECT portal_ts(s.t) AS "\ufeffTimeGenerated [UTC]", {_LA_HOST},
                v.os_type AS OSType, {os_name} AS OSName, {os_version} AS OSVersion,
                {os_name} || ' ' || {os_version} AS OSFullName,
                CASE WHEN p.p_os = 'Windows' THEN p.guid END AS UpdateID,
                CASE WHEN p.p_os = 'Windows' THEN '200' END AS RevisionNumber,
                CASE WHEN p.p_os = 'Windows' THEN p.title ELSE p.package || ' ' || p.version END AS Title,
                p.kb AS KBID, p.la_classification AS Classification, p.severity AS MSRCSeverity,
                p.cves AS CVENumbers,
                portal_ts(p.release_us) AS "PublishedDate [UTC]",
                CASE WHEN s.needed THEN 'Needed' ELSE 'Installed' END AS UpdateState,
                'true' AS Approved, 'Microsoft Update' AS ApprovalSource, 'false' AS Optional,
                p.reboot AS RebootBehavior,
                CASE WHEN p.p_os = 'Linux' THEN p.package END AS Product,
                CASE WHEN p.p_os = 'Linux' THEN p.version END AS ProductVersion,
                CASE WHEN p.p_os = 'Linux' THEN 'x86_64' END AS ProductArch,
                CASE WHEN p.p_os = 'Linux' THEN 'jammy-security' END AS PackageRepository,
                CASE WHEN v.os_type = 'Windows' THEN 'OpsManager' ELSE 'Linux' END AS SourceSystem,
                'Update' AS Type
              FROM la_state s JOIN vms v USING (vm) JOIN patches p USING (patch)
              WHERE s.day = {d}
              ORDER BY v.vm, p.patch_key
            ) TO '{folder / f"Update_{day.isoformat()}.csv"}' (HEADER, DELIMITER ',')
            """
        for d, day in enumerate(period.dates())
    ])
    rows = con.execute("SELECT count(*) FROM la_state").fetchone()[0]
    summary_cols = [
        ("TimeGenerated", "datetime"), ("Computer", "string"), ("ComputerEnvironment", "string"),
        ("SourceComputerId", "string"), ("VMUUID", "string"), ("ResourceId", "string"),
        ("_ResourceId", "string"), ("SubscriptionId", "string"), ("ResourceGroup", "string"),
        ("ManagementGroupName", "string"), ("OsVersion", "string"),
        ("CriticalUpdatesMissing", "int"), ("SecurityUpdatesMissing", "int"),
        ("OtherUpdatesMissing", "int"), ("TotalUpdatesMissing", "int"),
        ("OldestMissingSecurityUpdateInDays", "int"), ("OldestMissingSecurityUpdateBucket", "string"),
        ("RestartPending", "bool"), ("WindowsUpdateSetting", "string"), ("WSUSServer", "string"),
        ("SourceSystem", "string"), ("Type", "string"),
    ]
    cols_sql = ", ".join(f"{{'name': '{n}', 'type': '{t}'}}" for n, t in summary_cols)
    con.execute(
        f"""
        COPY (
          SELECT [struct_pack(name := 'PrimaryResult', columns := [{cols_sql}],
                  rows := list(r ORDER BY k1, k2))] AS tables
          FROM (
            SELECT a.vm AS k1, a.day AS k2, [
              strftime(make_timestamp(a.t), '%Y-%m-%dT%H:%M:%S.%gZ'),
              h.Computer, h.ComputerEnvironment, h.SourceComputerId, h.VMUUID, h.ResourceId,
              h._ResourceId, h.SubscriptionId, h.ResourceGroup, h.ManagementGroupName,
              {os_version},
              '0', coalesce(c.security, 0)::VARCHAR,
              (coalesce(c.updates, 0) + coalesce(c.other, 0))::VARCHAR,
              (coalesce(c.security, 0) + coalesce(c.updates, 0) + coalesce(c.other, 0))::VARCHAR,
              coalesce(o.oldest, 0)::VARCHAR,
              CASE WHEN o.oldest IS NULL OR o.oldest < 30 THEN 'Recent'
                   WHEN o.oldest < 180 THEN (o.oldest // 30 * 30) || ' days ago' ELSE 'Older' END,
              a.reboot::VARCHAR,
              CASE WHEN v.os_type = 'Windows' THEN CASE WHEN a.t >= v.wu_manual_from_us THEN 'Manual'
                   ELSE 'Scheduled installation' END END,
              CASE WHEN v.os_type = 'Linux' THEN NULL
                   WHEN v.kind = 'non_azure' THEN 'http://wsus-onprem-01.corp.contoso.com:8530'
                   ELSE 'http://wsus-' || v.location || '-01.contoso.internal:8530' END,
              CASE WHEN v.os_type = 'Windows' THEN 'OpsManager' ELSE 'Linux' END,
              'UpdateSummary'
            ] AS r
            FROM assess a JOIN vms v USING (vm)
            CROSS JOIN LATERAL (SELECT {_LA_HOST}) h
            LEFT JOIN counts c USING (vm, day)
            LEFT JOIN (
              SELECT m.vm, m.day, max((m.t - p.release_us) // {DAY_US}) AS oldest
              FROM missing m JOIN patches p USING (patch) WHERE p.classification = 'Security'
              GROUP BY ALL
            ) o USING (vm, day)
            WHERE v.source IN ('la', 'both')
          )
        ) TO '{folder / "UpdateSummary.json"}' (FORMAT json)
        """
    )
    con.execute(
        f"""
        COPY (
          SELECT strftime(make_timestamp(r.t + 600000000), '%Y-%m-%dT%H:%M:%S.%gZ') AS TimeGenerated,
            strftime(make_timestamp(r.t), '%Y-%m-%dT%H:%M:%S.%gZ') AS StartTime,
            strftime(make_timestamp(r.t + 3600000000), '%Y-%m-%dT%H:%M:%S.%gZ') AS EndTime,
            'Monthly-' || r."window" AS UpdateRunName,
            r.act AS CorrelationId, {_LA_HOST.replace('v.', 'r.')},
            r.os_type AS OSType, p.kb AS KBID,
            CASE WHEN p.p_os = 'Windows' THEN p.title ELSE p.package || ' ' || p.version END AS Title,
            CASE WHEN p.p_os = 'Linux' THEN p.package END AS Product,
            CASE WHEN p.p_os = 'Windows' THEN p.guid END AS UpdateId,
            CASE c.state WHEN 'NotSelected' THEN 'NotIncluded' ELSE c.state END AS InstallationStatus,
            CASE WHEN c.state = 'Failed' THEN '0x80240022' END AS ErrorResult,
            (r.slot % 2 = 1 AND c.state = 'Installed')::VARCHAR AS SucceededOnRetry,
            CASE WHEN r.os_type = 'Windows' THEN 'OpsManager' ELSE 'Linux' END AS SourceSystem,
            'UpdateRunProgress' AS Type,
            'PrimaryResult' AS TableName
          FROM run_rows r JOIN children c USING (vm, slot) JOIN patches p USING (patch)
          WHERE r.source IN ('la', 'both')
          ORDER BY r.t, r.vm, p.patch_key
        ) TO '{folder / "UpdateRunProgress.json"}' (FORMAT json, ARRAY true)
        """
    )
    run_rows = con.execute(
        "SELECT count(*) FROM run_rows r JOIN children c USING (vm, slot) WHERE r.source IN ('la', 'both')"
    ).fetchone()[0]
    summaries = con.execute(
        "SELECT count(*) FROM assess JOIN vms USING (vm) WHERE source IN ('la', 'both')"
    ).fetchone()[0]
    return {"la_update_rows": rows, "la_summary_rows": summaries, "la_run_progress_rows": run_rows}

