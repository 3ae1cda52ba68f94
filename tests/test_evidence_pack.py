"""The evidence pack: hostile source text is rendered inert, `patchledger verify` detects
tampering with the pack and with the ledger, and two reports of one warehouse are identical.

One generated estate with hostile text planted where an attacker (or a garbled feed) could put
it, one `patchledger run`, two `patchledger report` runs into two folders.
"""

from __future__ import annotations

import csv
import hashlib
import html.parser
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from pipelines import cli

REPO = Path(__file__).resolve().parents[1]
CLI = REPO / ".venv" / "bin" / "patchledger"

# The brief's hostile bulletin title (script + formula), and a variant that starts with "=".
HOSTILE = '<script>alert(1)</script> =HYPERLINK("http://evil","x")'
FORMULA = '=HYPERLINK("http://evil","x")<script>alert(2)</script>'

pytestmark = pytest.mark.slow


# ---------------------------------------------------------------- fixtures


def plant_hostile_text(estate: Path) -> dict[str, str]:
    """HOSTILE as the title of one MSRC vulnerability and as one exception's reason; FORMULA as
    the owner tag of every VM in every inventory snapshot (the owner is printed in the report and every population)."""
    month = sorted((estate / "bulletins" / "msrc").glob("2026-*.json"))[-1]
    document = json.loads(month.read_text(encoding="utf-8"))
    vulnerability = document["Vulnerability"][0]
    vulnerability["Title"] = {"Value": HOSTILE}
    month.write_text(json.dumps(document), encoding="utf-8")

    for vms_file in sorted((estate / "azure" / "virtual_machines").glob("*.json")):
        vms = json.loads(vms_file.read_text(encoding="utf-8"))
        for vm in vms:
            vm["tags"]["owner"] = FORMULA
        vms_file.write_text(json.dumps(vms), encoding="utf-8")

    register = estate / "registers" / "exceptions.csv"
    with register.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    rows[0]["reason"] = HOSTILE
    with register.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return {"cve": vulnerability["CVE"], "exception_id": rows[0]["exception_id"]}


@pytest.fixture(scope="module")
def pack(tmp_path_factory):
    """(root, estate, warehouse, report folder, second report folder, planted ids,
    seconds between the two reports)."""
    from pipelines.demo.generator import generate_estate

    root = tmp_path_factory.mktemp("evidence")
    estate = root / "estate"
    generate_estate(estate, vms=40, days=20, seed=41)
    planted = plant_hostile_text(estate)
    home = root / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PATCHLEDGER_", "AZURE_"))}
    env.update(DAGSTER_HOME=str(home), PATCHLEDGER_REPORTS=str(root / "run_reports"),
               PATCHLEDGER_SOURCE="files")
    warehouse = root / "warehouse.duckdb"
    done = subprocess.run([str(CLI), "run", "--estate", str(estate), "--warehouse", str(warehouse)],
                          env=env, capture_output=True, text=True, timeout=600, cwd=root)
    assert done.returncode == 0, done.stderr[-3000:]
    folders, starts = [], []
    for name in ("report_a", "report_b"):
        starts.append(time.time())
        done = subprocess.run([str(CLI), "report", "--warehouse", str(warehouse), "--out",
                               str(root / name)], env=env, capture_output=True, text=True,
                              timeout=600, cwd=root)
        assert done.returncode == 0, done.stderr[-3000:]
        (folder,) = (root / name).iterdir()
        folders.append(folder)
    return root, estate, warehouse, folders[0], folders[1], planted, starts[1] - starts[0]


def verify(folder: Path, warehouse: Path):
    """`patchledger verify FOLDER --warehouse FILE` through the real CLI app, in process."""
    return CliRunner().invoke(cli.app, ["verify", str(folder), "--warehouse", str(warehouse)])


@pytest.fixture
def pack_copy(pack, tmp_path) -> Path:
    target = tmp_path / pack[3].name
    shutil.copytree(pack[3], target)
    return target


@pytest.fixture
def warehouse_copy(pack, tmp_path) -> Path:
    target = tmp_path / "warehouse.duckdb"
    shutil.copyfile(pack[2], target)
    return target


# ---------------------------------------------------------------- hostile text


class _Elements(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.attributes, self.text = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attributes += [(tag, name, value or "") for name, value in attrs]

    def handle_data(self, data):
        self.text.append(data)


def test_the_hostile_text_reached_the_warehouse_verbatim(pack):
    warehouse, planted = pack[2], pack[5]
    conn = duckdb.connect(str(warehouse), read_only=True)
    try:
        titles = conn.execute("SELECT DISTINCT vulnerability_title FROM staging.msrc_fixes "
                              "WHERE cve = ?", [planted["cve"]]).fetchall()
        owners = conn.execute("SELECT DISTINCT owner FROM marts.vm_inventory "
                              "WHERE in_inventory").fetchall()
        reasons = conn.execute("SELECT reason FROM staging.exceptions WHERE exception_id = ?",
                               [planted["exception_id"]]).fetchall()
    finally:
        conn.close()
    assert titles == [(HOSTILE,)]  # stored raw; the vulnerability title reaches no report
    assert owners == [(FORMULA,)]
    assert reasons == [(HOSTILE,)]


def test_html_shows_the_hostile_text_escaped_and_runs_nothing(pack):
    page = (pack[3] / "compliance-report.html").read_text(encoding="utf-8")
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # the exception's reason
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in page  # the owners in the tables
    parsed = _Elements()
    parsed.feed(page)
    assert "script" not in parsed.tags and "iframe" not in parsed.tags
    assert [a for a in parsed.attributes if a[1].lower().startswith("on")] == []
    assert [a for a in parsed.attributes if a[2].strip().lower().startswith("javascript:")] == []
    text = "".join(parsed.text)
    assert HOSTILE in text and FORMULA in text  # the literal text survives


def test_pdf_shows_the_hostile_text_as_text(pack):
    from pdfminer.high_level import extract_text

    text = extract_text(str(pack[3] / "compliance-report.pdf"))  # text boxes: a cell's lines together
    flat = re.sub(r"\s+", "", text)
    assert "<script>alert(1)</script>" in flat
    assert '=HYPERLINK("http://evil","x")<script>alert(2)</script>' in flat


def test_dashboard_in_a_browser_shows_the_hostile_text_and_runs_nothing(pack, browser_dom):
    board = pack[3] / "dashboard.html"
    source = board.read_text(encoding="utf-8")
    assert "<script>alert" not in source and "\\u003cscript\\u003ealert(2)" in source  # inert inside the JSON
    dom = browser_dom(board, "tab=machines")
    assert 'data-ready="machines"' in dom  # the page's own script ran
    assert dom.lower().count("<script") == 2  # its data and its code, nothing the data added
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in dom  # the owners, shown as text
    parsed = _Elements()
    parsed.feed(dom)
    assert [a for a in parsed.attributes if a[1].lower().startswith("on")] == []
    assert FORMULA in "".join(parsed.text)


def test_xlsx_cells_are_strings_and_never_formulas(pack):
    from openpyxl import load_workbook

    book = load_workbook(pack[3] / "populations.xlsx")
    found = {"owner": 0, "reason": 0}
    for sheet in book.worksheets:
        for row in sheet.iter_rows():
            for cell in row:
                assert cell.data_type != "f", (sheet.title, cell.coordinate, cell.value)
                if isinstance(cell.value, str):
                    assert not cell.value.startswith("="), (sheet.title, cell.coordinate)
                    if "HYPERLINK" in cell.value:
                        assert cell.data_type == "s"
                        if cell.value.startswith("'"):
                            assert cell.value == "'" + FORMULA
                            found["owner"] += 1
                        else:
                            assert cell.value == HOSTILE
                            found["reason"] += 1
    assert found["owner"] >= 40 and found["reason"] >= 1, found


def test_csv_cells_are_neutralized(pack):
    owners = reasons = 0
    for path in sorted((pack[3] / "populations").glob("*.csv")):
        with path.open(newline="", encoding="utf-8") as handle:
            for row in csv.reader(handle):
                for value in row:
                    assert not value.startswith("="), (path.name, value)
                    owners += value == "'" + FORMULA
                    reasons += value == HOSTILE
    assert owners >= 40 and reasons >= 1, (owners, reasons)


# ---------------------------------------------------------------- tamper evidence


def test_an_untouched_pack_verifies(pack, pack_copy, warehouse_copy):
    outcome = verify(pack_copy, warehouse_copy)
    assert outcome.exit_code == 0, outcome.output
    assert "OK" in outcome.output


def _fails(outcome, *fragments: str) -> None:
    assert outcome.exit_code == 1, outcome.output
    flat = re.sub(r"\s+", "", outcome.output)  # rich wraps long paths at any character
    for fragment in fragments:
        assert re.sub(r"\s+", "", fragment) in flat, outcome.output


def test_a_flipped_byte_in_the_html_fails(pack_copy, warehouse_copy):
    path = pack_copy / "compliance-report.html"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    _fails(verify(pack_copy, warehouse_copy), "compliance-report.html", "SHA-256 differs")


def _gap_rows(pack_copy: Path) -> tuple[Path, list[str]]:
    path = pack_copy / "populations" / "gaps.csv"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    assert len(lines) > 10
    return path, lines


def test_a_deleted_row_in_gaps_csv_fails(pack_copy, warehouse_copy):
    path, lines = _gap_rows(pack_copy)
    del lines[5]
    path.write_text("".join(lines), encoding="utf-8")
    _fails(verify(pack_copy, warehouse_copy), "gaps.csv", "SHA-256 differs")


def test_two_swapped_rows_in_gaps_csv_fail(pack_copy, warehouse_copy):
    path, lines = _gap_rows(pack_copy)
    lines[3], lines[4] = lines[4], lines[3]
    assert lines[3] != lines[4]
    path.write_text("".join(lines), encoding="utf-8")
    _fails(verify(pack_copy, warehouse_copy), "gaps.csv", "SHA-256 differs")


def test_a_file_added_to_the_pack_fails(pack_copy, warehouse_copy):
    (pack_copy / "populations" / "extra_gaps.csv").write_text("gap_id\nforged\n", encoding="utf-8")
    _fails(verify(pack_copy, warehouse_copy), "extra_gaps.csv", "not listed in the manifest")


def test_a_file_hash_edited_in_the_manifest_fails(pack_copy, warehouse_copy):
    path = pack_copy / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest["files"]["populations/gaps.csv"] = "0" * 64
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    _fails(verify(pack_copy, warehouse_copy), "gaps.csv", "SHA-256 differs")


def test_a_file_removed_from_the_manifest_fails(pack_copy, warehouse_copy):
    path = pack_copy / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    del manifest["files"]["compliance-report.pdf"]
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    _fails(verify(pack_copy, warehouse_copy), "compliance-report.pdf", "not listed")


def test_an_edited_ledger_anchor_in_the_manifest_fails(pack_copy, warehouse_copy):
    path = pack_copy / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest["ledger_heads"]["authorization_events"]["chain_sha256"] = "f" * 64
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    _fails(verify(pack_copy, warehouse_copy), "ledger.authorization_events",
           "anchored in the manifest")


def test_an_edited_row_count_in_the_manifest_fails(pack_copy, warehouse_copy):
    path = pack_copy / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest["population_rows"]["gaps"] -= 1
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    assert verify(pack_copy, warehouse_copy).exit_code == 1


def _tamper(warehouse: Path, *statements: str) -> None:
    conn = duckdb.connect(str(warehouse))
    try:
        for statement in statements:
            conn.execute(statement)
    finally:
        conn.close()


def test_a_flipped_byte_in_a_ledger_row_fails(pack_copy, warehouse_copy):
    _tamper(warehouse_copy, """
        UPDATE ledger.authorization_events
        SET content = replace(content, '"', '''') WHERE seq = 5""")
    _fails(verify(pack_copy, warehouse_copy), "ledger.authorization_events seq 5",
           "content_altered")


def test_a_deleted_ledger_row_fails(pack_copy, warehouse_copy):
    _tamper(warehouse_copy, "DELETE FROM ledger.authorization_events WHERE seq = 7")
    _fails(verify(pack_copy, warehouse_copy), "ledger.authorization_events seq 8", "broken_link",
           "sequence_gap")


def test_swapped_ledger_rows_fail(pack_copy, warehouse_copy):
    _tamper(warehouse_copy,
            "UPDATE ledger.authorization_events SET seq = -3 WHERE seq = 3",
            "UPDATE ledger.authorization_events SET seq = 3 WHERE seq = 4",
            "UPDATE ledger.authorization_events SET seq = 4 WHERE seq = -3")
    _fails(verify(pack_copy, warehouse_copy), "ledger.authorization_events seq 3", "broken_link")


def test_a_rewritten_and_rehashed_ledger_fails_against_the_manifest_anchor(pack_copy,
                                                                           warehouse_copy):
    """Change a row and recompute every hash of the chain: the warehouse alone then verifies,
    the chain head copied into the manifest does not."""
    import pandas as pd

    from pipelines.ledger import GENESIS, chain_hash, verify_ledger

    conn = duckdb.connect(str(warehouse_copy))
    try:
        rows = conn.execute("SELECT seq, content FROM ledger.authorization_events "
                            "ORDER BY seq").fetchall()
        prev, rewritten = GENESIS, []
        for seq, content in rows:
            if seq == 2:  # a forged field in an approval, every hash recomputed
                forged = content[:-1] + ',"zz_note":"approved by nobody"}'
                assert forged != content
                content = forged
            row_sha = hashlib.sha256(content.encode()).hexdigest()
            chain = chain_hash(prev, row_sha)
            rewritten.append((seq, content, row_sha, prev, chain))
            prev = chain
        conn.register("forged", pd.DataFrame(rewritten, columns=[
            "seq", "content", "row_sha256", "prev_sha256", "chain_sha256"]))
        conn.execute("UPDATE ledger.authorization_events AS l SET content = f.content, "
                     "row_sha256 = f.row_sha256, prev_sha256 = f.prev_sha256, "
                     "chain_sha256 = f.chain_sha256 FROM forged AS f WHERE l.seq = f.seq")
        conn.execute("UPDATE ledger.chain_heads SET head_chain_sha256 = ? "
                     "WHERE register = 'authorization_events' AND head_seq = ?", [prev, seq])
        conn.unregister("forged")
        assert verify_ledger(conn) == []  # the warehouse alone cannot tell
    finally:
        conn.close()
    _fails(verify(pack_copy, warehouse_copy), "ledger.authorization_events",
           "anchored in the manifest")


# ---------------------------------------------------------------- determinism


def _digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_two_reports_of_one_warehouse_are_byte_identical(pack):
    """Every file, the PDF and the XLSX included. (openpyxl stamps the wall clock into
    docProps/core.xml on save; the workbook's hash is printed in the HTML and the manifest, so
    one clock-dependent entry would change four files.)"""
    first, second = _digests(pack[3]), _digests(pack[4])
    assert len(first) >= 12 and set(first) == set(second)
    assert {name for name in first if first[name] != second[name]} == set()
    assert pack[6] >= 1.0, "the two reports were written in different seconds"


def test_the_pack_written_without_a_forked_workbook_writer_is_the_same(pack, tmp_path, monkeypatch):
    """The CLI's reports wrote the workbook in a forked process beside the CSVs and the charts,
    and the PDF in another beside the dashboard; written in one process (where processes cannot
    be forked) every file, the workbook's hash in the HTML and the manifest included, is the same."""
    from pipelines.reporting import pack as pack_module

    monkeypatch.setattr(pack_module.multiprocessing, "get_all_start_methods", lambda: ["spawn"])
    assert pack_module.start_forked(print, "unused") is None
    pack_module.write_reports(str(pack[2]), tmp_path / "in_process", None)
    (folder,) = (tmp_path / "in_process").iterdir()
    first, alone = _digests(pack[3]), _digests(folder)
    assert len(first) >= 12 and set(alone) == set(first)
    assert {name for name in first if first[name] != alone[name]} == set()
