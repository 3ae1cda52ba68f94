"""Secrets never leak: a canary client secret and a SAS-signed webhook URL in the environment of
a full `patchledger run` and `patchledger report` appear in no output, no Dagster event, no
warehouse table and no report file.

The webhook URL points at a local HTTP server, so the notices are really POSTed (the server sees
the signed URL, as the real receiver would) and the success path's log lines are exercised; a
second test makes the webhook refuse the POST and checks the failure path the same way.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import threading
import time
import zipfile
from pathlib import Path

import duckdb
import pytest

REPO = Path(__file__).resolve().parents[1]
CLI = REPO / ".venv" / "bin" / "patchledger"

SECRET = "canary-secret-7f3a9c2e51d84b6aa0e3f9d7c1b25e80"
SAS = "canary-sas-b41e07d9c3a85f26"
# Every way the canaries could show up: whole, the SAS parameter, or a truncated prefix.
NEEDLES = [SECRET, SAS, "sig=" + SAS, "canary-secret", "canary-sas"]

pytestmark = pytest.mark.slow


class _Hook(http.server.BaseHTTPRequestHandler):
    status = 200
    received: list[tuple[str, bytes]] = []

    def do_POST(self):  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).received.append((self.path, body))
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, *args):  # keep the test output quiet
        pass


def start_server(status: int):
    handler = type(f"Hook{status}", (_Hook,), {"status": status, "received": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/hook?sv=2024-05-04&se=2030-01-01&sig={SAS}"
    return server, handler, url


def hits(data: bytes | str) -> list[str]:
    if isinstance(data, bytes):
        return [n for n in NEEDLES if n.encode() in data]
    return [n for n in NEEDLES if n in data]


def dagster_home(root: Path) -> Path:
    home = root / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return home


def storage_leaks(home: Path) -> dict[str, list[str]]:
    """Every file of the Dagster home as bytes (sqlite run/event storage, compute logs)."""
    files = [p for p in home.rglob("*") if p.is_file()]
    assert any(p.suffix == ".db" for p in files), files
    return {str(p): found for p in files if (found := hits(p.read_bytes()))}


def event_log_leaks(home: Path, monkeypatch) -> tuple[int, dict[str, list[str]]]:
    """Every event of every run, serialized, plus the run records (config, tags)."""
    import dagster as dg
    from dagster._serdes import serialize_value

    monkeypatch.setenv("DAGSTER_HOME", str(home))
    leaks, events = {}, 0
    with dg.DagsterInstance.get() as instance:
        for run in instance.get_runs():
            if found := hits(serialize_value(run)):
                leaks[f"run {run.run_id}"] = found
            for entry in instance.all_logs(run.run_id):
                events += 1
                if found := hits(serialize_value(entry)):
                    leaks[f"{run.run_id} {entry.step_key} {entry.user_message[:80]}"] = found
    return events, leaks


def warehouse_leaks(path: Path) -> tuple[int, dict[str, list[str]]]:
    """Every table of every schema as text, and every table and column comment."""
    conn = duckdb.connect(str(path), read_only=True)
    try:
        tables = conn.execute(
            "SELECT database_name, schema_name, table_name FROM duckdb_tables() "
            "WHERE NOT internal ORDER BY ALL").fetchall()
        leaks = {}
        for database, schema, table in tables:
            name = f'"{database}"."{schema}"."{table}"'  # from the catalog
            text = conn.execute(f"SELECT string_agg(t::VARCHAR, '\n') FROM {name} AS t").fetchall()[0][0]
            if found := hits(text or ""):
                leaks[name] = found
        comments = conn.execute(
            "SELECT string_agg(coalesce(comment, ''), '\n') FROM duckdb_columns()").fetchall()[0][0]
        comments += conn.execute(
            "SELECT string_agg(coalesce(comment, ''), '\n') FROM duckdb_tables()").fetchall()[0][0]
        if found := hits(comments):
            leaks["comments"] = found
        return len(tables), leaks
    finally:
        conn.close()


def report_leaks(folder: Path) -> tuple[int, dict[str, list[str]]]:
    """Raw bytes of every file, the XLSX entries unzipped, the PDF as text (pdfminer)."""
    files = [p for p in folder.rglob("*") if p.is_file()]
    leaks = {}
    for path in files:
        if found := hits(path.read_bytes()):
            leaks[str(path)] = found
        if path.suffix == ".xlsx":
            with zipfile.ZipFile(path) as book:
                for entry in book.namelist():
                    if found := hits(book.read(entry)):
                        leaks[f"{path}:{entry}"] = found
        if path.suffix == ".pdf":
            from pdfminer.high_level import extract_text

            text = extract_text(str(path)).encode("utf-8")
            assert len(text) > 1000
            if found := hits(text):
                leaks[f"{path} (text)"] = found
    return len(files), leaks


@pytest.fixture(scope="module")
def estate(tmp_path_factory) -> Path:
    from pipelines.demo.generator import generate_estate

    path = tmp_path_factory.mktemp("secrets") / "estate"
    generate_estate(path, vms=40, days=20, seed=31)
    return path


@pytest.fixture(scope="module")
def canary_run(estate, tmp_path_factory):
    """`patchledger run` then `patchledger report` with the canaries in their environment."""
    root = tmp_path_factory.mktemp("canary_run")
    server, handler, url = start_server(200)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PATCHLEDGER_", "AZURE_"))}
    env.update(
        DAGSTER_HOME=str(dagster_home(root)), PATCHLEDGER_REPORTS=str(root / "reports"),
        PATCHLEDGER_SOURCE="files", PATCHLEDGER_NOTIFY_WEBHOOK=url,
        AZURE_TENANT_ID="00000000-0000-0000-0000-00000000beef",
        AZURE_CLIENT_ID="00000000-0000-0000-0000-00000000cafe", AZURE_CLIENT_SECRET=SECRET,
    )
    warehouse = root / "warehouse.duckdb"
    try:
        run = subprocess.run([str(CLI), "run", "--estate", str(estate), "--warehouse", str(warehouse)],
                             env=env, capture_output=True, text=True, timeout=600, cwd=root)
        report = subprocess.run([str(CLI), "report", "--warehouse", str(warehouse)],
                                env=env, capture_output=True, text=True, timeout=600, cwd=root)
    finally:
        server.shutdown()
        server.server_close()
    assert run.returncode == 0, run.stderr[-3000:]
    assert report.returncode == 0, report.stderr[-3000:]
    return root, warehouse, run, report, handler.received


def test_the_webhook_really_received_the_signed_request(canary_run):
    received = canary_run[4]
    assert len(received) == 1
    path, body = received[0]
    assert f"sig={SAS}" in path
    notices = json.loads(body)
    assert notices["event"] == "patchledger.new_patches" and notices["count"] >= 1
    assert hits(body) == []


def test_no_canary_in_cli_output(canary_run):
    _, _, run, report, _ = canary_run
    assert "Compliance summary" in run.stdout and "wrote " in report.stdout
    for stream in (run.stdout, run.stderr, report.stdout, report.stderr):
        assert hits(stream) == []


def test_no_canary_in_the_dagster_event_log(canary_run, monkeypatch):
    home = canary_run[0] / "dagster_home"
    events, leaks = event_log_leaks(home, monkeypatch)
    assert events > 300  # the whole run's events were read (about 400)
    assert leaks == {}
    assert storage_leaks(home) == {}


def test_no_canary_in_any_warehouse_table(canary_run):
    tables, leaks = warehouse_leaks(canary_run[1])
    assert tables > 60
    assert leaks == {}
    conn = duckdb.connect(str(canary_run[1]), read_only=True)
    try:
        deliveries = conn.execute(
            "SELECT DISTINCT delivery FROM ledger.notifications_sent").fetchall()
    finally:
        conn.close()
    assert deliveries == [("webhook",)]


def test_no_canary_in_any_report_file(canary_run):
    folder = canary_run[0] / "reports"
    files, leaks = report_leaks(folder)
    assert files >= 12  # html, pdf, xlsx, manifest, 8 population CSVs
    assert leaks == {}


def test_a_refused_webhook_fails_the_step_without_leaking_the_url(estate, canary_run, tmp_path,
                                                                  monkeypatch):
    """The failure path: the webhook answers 400 (not retried); the step fails, nothing is
    recorded, and neither the error, the event log nor the CLI-style message holds the SAS."""
    import dagster as dg

    source = canary_run[1]
    warehouse = tmp_path / "warehouse.duckdb"
    shutil.copyfile(source, warehouse)
    conn = duckdb.connect(str(warehouse))
    try:  # forget what was notified, so that this run has notices to POST
        conn.execute("DELETE FROM ledger.notifications_sent")
    finally:
        conn.close()
    server, handler, url = start_server(400)
    home = dagster_home(tmp_path)
    for name, value in {
        "DAGSTER_HOME": str(home), "PATCHLEDGER_ESTATE": str(estate), "PATCHLEDGER_SOURCE": "files",
        "PATCHLEDGER_WAREHOUSE": str(warehouse), "PATCHLEDGER_NOTIFY_WEBHOOK": url,
        "AZURE_CLIENT_SECRET": SECRET,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("PATCHLEDGER_AS_OF", raising=False)
    from pipelines.definitions import defs

    started = time.monotonic()
    try:
        with dg.DagsterInstance.get() as instance:
            result = defs().resolve_implicit_global_asset_job_def().execute_in_process(
                instance=instance, raise_on_error=False,
                asset_selection=[dg.AssetKey(t.split(".")) for t in (
                    "staging.patch_applicability", "staging.notification_candidates",
                    "ledger.notifications_sent", "marts.patch_notifications")])
    finally:
        server.shutdown()
        server.server_close()
    assert time.monotonic() - started < 60
    assert not result.success
    assert len(handler.received) == 1 and f"sig={SAS}" in handler.received[0][0]
    failures = [e for e in result.all_events if e.is_step_failure]
    assert len(failures) == 1
    chain, error = [], failures[0].step_failure_data.error
    while error is not None:
        chain.append(error.to_string())
        error = error.cause
    text = "\n".join(chain)
    assert "notification webhook http://127.0.0.1" in text and "HTTP 400" in text
    assert hits(text) == []
    events, leaks = event_log_leaks(home, monkeypatch)
    assert events > 5 and leaks == {}
    assert storage_leaks(home) == {}
    conn = duckdb.connect(str(warehouse), read_only=True)
    try:  # the failed step rolled back: nothing recorded as sent
        assert conn.execute("SELECT count(*) FROM ledger.notifications_sent").fetchall() == [(0,)]
    finally:
        conn.close()
