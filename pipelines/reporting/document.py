"""The report document: one HTML page in the auditors' outline, and its PDF (WeasyPrint).

Wide tables sit in landscape pages, cells wrap instead of overflowing, and machines appear by
name in the body with their full ids in an appendix.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2

from pipelines.reporting.queries import ARM_ID

TEMPLATES = Path(__file__).parent / "templates"


def timestamp(value: Any) -> str:
    """Timestamps in the report: UTC to the minute."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if value.tzinfo else f"{value:%Y-%m-%d %H:%M}"
    return "" if value is None else str(value)


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    env.filters["ts"] = timestamp
    env.filters["first_sentence"] = lambda text: (text or "").split(". ")[0].rstrip(".")
    return env


def render_html(data: dict[str, Any], charts: list[dict]) -> str:
    names = data.get("machine_names", {})

    def machine_names(text: str | None) -> str:
        """A sentence with each machine's ARM id replaced by its name (the appendix has the ids)."""
        return ARM_ID.sub(lambda m: names.get(m.group(0).lower(), m.group(0).rsplit("/", 1)[-1]), text or "")

    env = environment()
    env.filters["names"] = machine_names
    return env.get_template("report.html.j2").render(d=data, charts=charts)


def write_pdf(html: str, path: Path) -> None:
    import weasyprint

    weasyprint.HTML(string=html, base_url=str(TEMPLATES)).write_pdf(str(path))
