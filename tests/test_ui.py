"""The Dagster UI: start the web server on the code location, read the asset graph over
GraphQL, and launch a run through it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[1]

ASSET_QUERY = """
{ assetNodes { assetKey { path } groupName description owners { ... on TeamAssetOwner { team } } } }
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def webserver(tmp_path, demo_run):
    estate = demo_run[0]
    home = tmp_path / "dagster_home"
    home.mkdir()
    # Launch at once: the queued coordinator (the default, as in `make ui`) needs the daemon.
    (home / "dagster.yaml").write_text(
        "telemetry:\n  enabled: false\n"
        "run_coordinator:\n  module: dagster._core.run_coordinator\n  class: DefaultRunCoordinator\n"
    )
    port = _free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home), "PATCHLEDGER_ESTATE": str(estate),
           "PATCHLEDGER_WAREHOUSE": str(tmp_path / "ui.duckdb"),
           "PATCHLEDGER_REPORTS": str(tmp_path / "reports")}
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster-webserver"), "-w", "workspace.yaml",
         "-h", "127.0.0.1", "-p", str(port)],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/server_info", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(1)
        else:
            pytest.fail("the Dagster web server did not start within 120 s")
        yield url, port, tmp_path
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_ui_lists_assets_and_launches_a_run(webserver):
    from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError

    from pipelines.partitions import every_day

    url, port, tmp_path = webserver
    nodes = []
    for _ in range(60):  # the code location loads in the background
        answer = httpx.post(f"{url}/graphql", json={"query": ASSET_QUERY}, timeout=30).json()
        nodes = (answer.get("data") or {}).get("assetNodes") or []
        if nodes:
            break
        time.sleep(1)
    keys = {"/".join(n["assetKey"]["path"]) for n in nodes}
    assert {"marts/patch_catalog", "marts/vm_inventory", "marts/compliance_gaps"} <= keys
    assert all(n["description"] for n in nodes)
    assert {n["groupName"] for n in nodes} >= {"stage3_notification_channels", "stage6_patch_monitoring"}

    client = DagsterGraphQLClient("127.0.0.1", port_number=port)
    # The job holds the daily-partitioned time chain: a run names its days, here every one.
    run_id = client.submit_job_execution("full_refresh", tags=every_day())
    status = None
    deadline = time.monotonic() + 400
    while time.monotonic() < deadline:
        try:
            status = client.get_run_status(run_id).value
        except DagsterGraphQLClientError:
            status = None
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            break
        time.sleep(2)
    assert status == "SUCCESS"
    assert (tmp_path / "ui.duckdb").exists()
