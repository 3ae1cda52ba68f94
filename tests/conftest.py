"""Shared fixtures: the real samples beside the repository, and a small demo warehouse."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO.parent / "shared" / "samples"


@pytest.fixture(scope="session")
def samples() -> Path:
    """The real source samples; tests that need them skip where the folder is absent."""
    if not SAMPLES.is_dir():
        pytest.skip("shared samples are not beside the repository")
    return SAMPLES


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """A small generated estate, materialized end to end through the code location.

    Returns (estate, warehouse, reports, result). Environment variables point the code
    location's resources at the temporary folders, and the run names the days, as `patchledger
    run` does on a first run.
    """
    import dagster as dg

    from pipelines.demo.generator import generate_estate

    root = tmp_path_factory.mktemp("demo")
    estate, warehouse, reports = root / "estate", root / "warehouse.duckdb", root / "reports"
    generate_estate(estate, vms=60, days=30, seed=11)
    saved = {k: os.environ.get(k) for k in ("PATCHLEDGER_ESTATE", "PATCHLEDGER_WAREHOUSE",
                                             "PATCHLEDGER_REPORTS", "PATCHLEDGER_AS_OF",
                                             "PATCHLEDGER_SOURCE")}
    os.environ.update({"PATCHLEDGER_ESTATE": str(estate), "PATCHLEDGER_WAREHOUSE": str(warehouse),
                       "PATCHLEDGER_REPORTS": str(reports), "PATCHLEDGER_SOURCE": "files"})
    os.environ.pop("PATCHLEDGER_AS_OF", None)
    try:
        from pipelines.definitions import defs
        from pipelines.sources.scan_raw import touched_partitions

        job = defs().resolve_job_def("full_refresh")
        result = job.execute_in_process(instance=dg.DagsterInstance.ephemeral(), raise_on_error=False,
                                        tags=touched_partitions(estate, warehouse)[0])
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return estate, warehouse, reports, result


@pytest.fixture(scope="session")
def browser_dom():
    """A function (html file, fragment) -> the DOM after the page's script ran, from headless
    Chromium. `make test` installs Chromium where apt is available; elsewhere these tests skip
    and say why."""
    import shutil
    import subprocess

    binary = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if binary is None:
        pytest.skip("Chromium is not installed (make test installs it with apt-get where it can)")

    def dom(page: Path, fragment: str = "") -> str:
        import tempfile

        url = page.resolve().as_uri() + (f"#{fragment}" if fragment else "")
        with tempfile.TemporaryDirectory() as profile:
            done = subprocess.run(
                [binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 f"--user-data-dir={profile}", "--dump-dom", url],
                capture_output=True, text=True, timeout=120, check=True)
        return done.stdout

    return dom


class JsonServer:
    """A local HTTP server for the live clients: `answer(path) -> (status, JSON body)`, every
    requested path kept in `calls`."""

    def __init__(self, answer):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.answer, self.calls = answer, []
        self.posted = []  # (path, JSON body) of every POST, answered as a GET of the path
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                import json

                outer.calls.append(self.path)
                status, body = outer.answer(self.path)
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_POST(self):  # noqa: N802 (http.server's name)
                import json

                outer.posted.append((self.path, json.loads(self.rfile.read(int(self.headers["Content-Length"])))))
                self.do_GET()

            def log_message(self, *args):
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture
def json_server():
    """Start a JsonServer with `json_server(answer)`; stopped after the test."""
    started = []
    yield lambda answer: started.append(JsonServer(answer)) or started[-1]
    for server in started:
        server.close()
