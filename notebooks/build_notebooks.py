"""Writes the analyst notebooks (run once after editing; the .ipynb files are committed).

Each notebook opens the published read-only copy of the warehouse (pipelines.publish), which a
run replaces rather than waits for; the connection is still closed in the notebook's last cell.
"""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).parent

OPEN = '''import os
from pathlib import Path

import duckdb
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

# The read-only copy published beside the warehouse of `make demo` (or PATCHLEDGER_WAREHOUSE)
# after each successful run: a session left open here never blocks a run.
LIVE = Path(os.environ.get("PATCHLEDGER_WAREHOUSE", "../data/warehouse.duckdb"))
WAREHOUSE = LIVE.with_name(f"{LIVE.stem}-read{LIVE.suffix}")
conn = duckdb.connect(str(WAREHOUSE), read_only=True)
q = lambda sql, *params: conn.execute(sql, list(params)).df()  # noqa: E731'''

CLOSE = "conn.close()  # release the copy"

NOTEBOOKS = {
    "01_compliance_overview.ipynb": [
        new_markdown_cell("# Compliance overview\n\nWhere the estate stands on the evaluation date: "
                          "coverage, open gaps by type and severity, and what is overdue under each framework."),
        new_code_cell(OPEN),
        new_code_cell('as_of = q("SELECT max(as_of) AS as_of FROM marts.compliance_gaps").as_of[0]\n'
                      'coverage = q("SELECT coverage_status, machine_kind, count(*) AS machines '
                      'FROM marts.vm_inventory GROUP BY ALL ORDER BY ALL")\n'
                      'print("as of", as_of)\ncoverage'),
        new_code_cell('by_type = q("SELECT gap_type, count(*) AS gaps, count(*) FILTER (WHERE days_overdue > 0) AS overdue '
                      'FROM marts.compliance_gaps GROUP BY ALL ORDER BY gaps DESC")\n'
                      'ax = by_type.plot.barh(x="gap_type", y=["gaps", "overdue"], figsize=(8, 4), title="Open gaps by type")\n'
                      'ax.invert_yaxis()\nby_type'),
        new_code_cell('matrix = q("""PIVOT (SELECT severity, criticality FROM marts.compliance_gaps\n'
                      '    WHERE gap_type IN (\'authorized_missing\', \'available_unauthorized\', \'failed_reapply\', \'pending_reboot\'))\n'
                      '    ON criticality USING count(*) GROUP BY severity ORDER BY severity""")\nmatrix'),
        new_code_cell('q("SELECT sla_framework, count(*) AS overdue, max(days_overdue) AS worst_days '
                      'FROM marts.compliance_gaps WHERE days_overdue > 0 GROUP BY ALL ORDER BY overdue DESC")'),
        new_code_cell(CLOSE),
    ],
    "02_gap_and_schedule_drilldown.ipynb": [
        new_markdown_cell("# Gaps and the remediation schedule\n\nThe most urgent gaps, one machine in detail, "
                          "and when each gap is scheduled to close."),
        new_code_cell(OPEN),
        new_code_cell('top = q("SELECT gap_id, vm_name, patch_key, title, gap_type, severity, in_kev, sla_due, '
                      'days_overdue, priority FROM marts.compliance_gaps ORDER BY priority DESC, gap_id LIMIT 15")\ntop'),
        new_code_cell('vm = q("SELECT vm_id FROM marts.compliance_gaps ORDER BY priority DESC, gap_id LIMIT 1").vm_id[0]\n'
                      'print(vm)\nq("SELECT patch_key, state, raw_state, source, observed_at FROM marts.vm_patch_state '
                      'WHERE vm_id = ? ORDER BY patch_key", vm)'),
        new_code_cell('schedule = q("SELECT window_start::DATE AS day, status, count(*) AS steps '
                      'FROM marts.remediation_schedule WHERE window_start IS NOT NULL GROUP BY ALL ORDER BY ALL")\n'
                      'if len(schedule):\n'
                      '    schedule.pivot_table(index="day", columns="status", values="steps", fill_value=0)'
                      '.plot.bar(stacked=True, figsize=(10, 4), title="Scheduled remediation steps per day")\n'
                      'q("SELECT status, count(*) AS gaps FROM marts.remediation_schedule GROUP BY ALL ORDER BY ALL")'),
        new_code_cell('q("SELECT vm_name, patch_key, action, window_id, window_start, sequence, status, reason '
                      'FROM marts.remediation_schedule WHERE status <> \'scheduled\' ORDER BY vm_name, sequence LIMIT 20")'),
        new_code_cell(CLOSE),
    ],
    "03_point_in_time_and_trend.ipynb": [
        new_markdown_cell("# Point in time and trend\n\nEvery observation is kept, so the state of any machine "
                          "on any past date can be reconstructed; the daily trend shows how compliance moved."),
        new_code_cell(OPEN),
        new_code_cell('history = q("SELECT observed_at::DATE AS day, state, count(*) AS observations '
                      'FROM marts.vm_patch_history GROUP BY ALL ORDER BY ALL")\n'
                      'history.pivot_table(index="day", columns="state", values="observations", fill_value=0)'
                      '.plot(figsize=(10, 4), title="Observations per day by state")\nhistory.tail()'),
        new_code_cell('# The state of every patch on one machine as it stood 14 days before the evaluation date.\n'
                      'as_of = q("SELECT max(as_of) AS d FROM marts.compliance_gaps").d[0]\n'
                      'vm = q("SELECT vm_id FROM marts.vm_patch_history GROUP BY vm_id ORDER BY count(*) DESC, vm_id LIMIT 1").vm_id[0]\n'
                      'q("""SELECT patch_key, arg_max(state, observed_at) AS state_then, max(observed_at) AS last_seen\n'
                      '     FROM marts.vm_patch_history WHERE vm_id = ? AND observed_at < ?::DATE - 13\n'
                      '     GROUP BY patch_key ORDER BY patch_key""", vm, as_of)'),
        new_code_cell(CLOSE),
    ],
}


def main() -> None:
    for name, cells in NOTEBOOKS.items():
        notebook = new_notebook(cells=cells, metadata={"kernelspec": {
            "name": "python3", "display_name": "Python 3", "language": "python"}})
        nbformat.write(notebook, HERE / name)


if __name__ == "__main__":
    main()
