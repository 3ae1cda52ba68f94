"""The msrc_revisions sensor: live-only, polls the /updates index, cursor in the sensor."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from pipelines import sensors
from pipelines.resources import RunSettings
from pipelines.sources import msrc
from pipelines.sources.msrc.resource import MsrcResource

NOW = datetime.now(UTC).replace(microsecond=0)


def stamp(days_ago: int) -> str:
    return (NOW - timedelta(days=days_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def entry(document_id: str, released_days_ago: int, current_days_ago: int, title: str | None = None) -> dict:
    return {"ID": document_id, "Alias": document_id, "DocumentTitle": title or f"{document_id} Security Updates",
            "Severity": None, "InitialReleaseDate": stamp(released_days_ago),
            "CurrentReleaseDate": stamp(current_days_ago)}


class FakeIndex:
    def __init__(self, entries: list[dict]):
        self.entries = entries
        self.fail = False

    def __call__(self, path: str) -> tuple[int, dict]:
        return (503, {}) if self.fail else (200, {"value": self.entries})


@pytest.fixture
def fake(json_server, tmp_path, monkeypatch):
    """The MSRC /updates index on a local server; the sensor's resources point at it."""
    index = FakeIndex([
        entry("2026-Aaa", 60, 40),
        entry("2026-Bbb", 30, 20),
        entry("2016-Old", 3000, 1),  # out of the 24-month scope, revised yesterday
        entry("1999-Sep", 100, 1, title=msrc.MARINER_TITLE),  # Mariner pseudo-month (real dates)
        entry("2017-May-B", 3300, 1),  # published empty, never fetched
    ])
    monkeypatch.setenv("PATCHLEDGER_WAREHOUSE", str(tmp_path / "never.duckdb"))  # must stay absent
    server = json_server(index)
    index.calls = server.calls
    index.resources = {
        "msrc_api": MsrcResource(base_url=f"{server.url}/cvrf/v3.0"),
        "run_settings": RunSettings(estate_dir=str(tmp_path / "estate"), source="azure"),
    }
    return index


def tick(fake: FakeIndex, cursor: str | None = None, **resources):
    context = dg.build_sensor_context(cursor=cursor, instance=dg.DagsterInstance.ephemeral(),
                                      resources={**fake.resources, **resources})
    return sensors.msrc_revisions(context), context


def test_first_tick_runs_then_only_revisions_do(fake, tmp_path):
    result, context = tick(fake)
    assert isinstance(result, dg.RunRequest)
    newest = NOW - timedelta(days=20)
    assert context.cursor == newest.isoformat()
    assert result.run_key == f"msrc-revision-{newest:%Y%m%dT%H%M%SZ}"
    assert result.tags["patchledger/msrc_revised"] == "2026-Aaa,2026-Bbb"
    assert fake.calls == ["/cvrf/v3.0/updates"]

    result, context = tick(fake, context.cursor)  # nothing newer (old, Mariner and empty months ignored)
    assert isinstance(result, dg.SkipReason) and "no MSRC document revised" in result.skip_message

    fake.entries[0] = entry("2026-Aaa", 60, 2)  # MSRC revises an earlier month
    result, context = tick(fake, context.cursor)
    assert isinstance(result, dg.RunRequest)
    assert result.tags["patchledger/msrc_revised"] == "2026-Aaa"
    assert context.cursor == (NOW - timedelta(days=2)).isoformat()
    assert not (tmp_path / "never.duckdb").exists()  # the warehouse is never opened
    assert sensors.msrc_revisions.job_name == "bulletin_refresh"


def test_mariner_in_scope_when_asked(fake):
    mariner = MsrcResource(base_url=fake.resources["msrc_api"].base_url, mariner="1")
    result, _ = tick(fake, (NOW - timedelta(days=10)).isoformat(), msrc_api=mariner)
    assert isinstance(result, dg.RunRequest) and result.tags["patchledger/msrc_revised"] == "1999-Sep"


def test_offline_mode_and_outage_skip(fake, tmp_path):
    fake.fail = True
    result, context = tick(fake, "2026-01-01T00:00:00+00:00")
    assert isinstance(result, dg.SkipReason) and "MSRC /updates unavailable (HTTPStatusError)" in result.skip_message
    assert context.cursor == "2026-01-01T00:00:00+00:00"  # unchanged: retried next tick
    calls = len(fake.calls)
    result, _ = tick(fake, run_settings=RunSettings(estate_dir=str(tmp_path / "estate"), source="files"))
    assert isinstance(result, dg.SkipReason) and "offline mode" in result.skip_message
    assert len(fake.calls) == calls  # no request in offline mode


def test_sensor_is_in_the_code_location():
    assert {s.name for s in sensors.all_sensors()} == {"estate_changed", "msrc_revisions"}
