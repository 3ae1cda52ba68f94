"""Update-server placement follows the seed's rules, checked by hand on small estates."""

from __future__ import annotations

from datetime import date

import duckdb
import pytest

from assets.update_servers import LINUX_MONTHLY_MB, MINORITY_SHARE, WINDOWS_MONTHLY_MB
from pipelines.warehouse import build_table


def placement(machines: list[tuple[str, str, str, str, str | None]]) -> list[dict]:
    conn = duckdb.connect()
    conn.execute("CREATE SCHEMA marts")
    conn.execute("CREATE TABLE marts.vm_inventory (vm_id VARCHAR, machine_kind VARCHAR, "
                 "subscription_id VARCHAR, location VARCHAR, os_type VARCHAR, wsus_server VARCHAR)")
    conn.executemany("INSERT INTO marts.vm_inventory VALUES (?, ?, ?, ?, ?, ?)",
                     [(f"vm{i}", *m) for i, m in enumerate(machines)])
    build_table(conn, "marts.update_server_placement", params={
        "as_of": date(2026, 11, 27), "minority_share": MINORITY_SHARE,
        "windows_monthly_mb": WINDOWS_MONTHLY_MB, "linux_monthly_mb": LINUX_MONTHLY_MB})
    cursor = conn.execute("SELECT * FROM marts.update_server_placement ORDER BY site")
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def azure(sub="s1", region="westeurope", os_type="Windows", wsus=None):
    return ("azure_vm", sub, region, os_type, wsus)


def onprem(kind="non_azure", os_type="Windows", wsus="wsus01.corp.example"):
    return (kind, None, None, os_type, wsus)


def test_cloud_only_gets_a_server_per_subscription_and_region():
    rows = placement([azure(), azure(), azure(region="eastus"), azure(sub="s2")])
    assert [r["site"] for r in rows] == ["azure:s1/eastus", "azure:s1/westeurope", "azure:s2/westeurope"]
    assert {r["scenario"] for r in rows} == {"cloud_only"}
    assert all(r["recommend_update_server"] and r["cross_boundary_gb_per_month"] == 0 for r in rows)


def test_hybrid_when_each_side_holds_ten_percent_or_more():
    rows = placement([azure()] * 7 + [onprem()] * 3)
    assert {r["scenario"] for r in rows} == {"hybrid"}
    assert all(r["recommend_update_server"] for r in rows)
    on_prem = next(r for r in rows if r["site"] == "on-premises")
    assert on_prem["actual_update_servers"] == ["wsus01.corp.example"]
    assert on_prem["estate_on_premises_share"] == pytest.approx(0.3)


def test_small_on_premises_side_is_served_from_azure_across_the_boundary():
    # 1 of 12 machines on premises (8.3 %): only Azure gets servers.
    rows = placement([azure()] * 11 + [onprem(kind="arc", os_type="Linux")])
    on_prem = next(r for r in rows if r["site"] == "on-premises")
    assert on_prem["scenario"] == "azure_majority_only"
    assert not on_prem["recommend_update_server"]
    assert on_prem["cross_boundary_gb_per_month"] == pytest.approx(round(LINUX_MONTHLY_MB / 1024, 1))
    assert next(r for r in rows if r["site_kind"] == "azure")["recommend_update_server"]


def test_small_azure_side_is_served_from_on_premises():
    rows = placement([onprem()] * 19 + [azure(os_type="Windows")])
    site = next(r for r in rows if r["site_kind"] == "azure")
    assert site["scenario"] == "on_premises_majority_only"
    assert site["served_from"] == "on-premises update server, across the boundary"
    assert site["cross_boundary_gb_per_month"] == pytest.approx(round(WINDOWS_MONTHLY_MB / 1024, 1))
