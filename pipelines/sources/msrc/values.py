"""Tolerant accessors of MSRC fields: JSON and XML-derived shapes alike."""

from __future__ import annotations

import re
from datetime import date
from typing import Any

from pipelines.sources.bulletins import text_value as _text
from pipelines.sources.msrc import (
    _DOCUMENT_ID,
    _MONTH_ABBR,
    MARINER_TITLE,
    MONTHS,
    MsrcDocumentError,
)


def _items(value: Any) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _ids(value: Any) -> list[str]:
    return [t for t in (_text(v) for v in _items(value)) if t]


def _enum(value: Any, names: dict[int, str]) -> str | None:
    """An enum as its XML string, whether the document gave the integer or the string."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return names.get(value, str(value))
    text = _text(value)
    if text is not None and text.isdigit():
        return names.get(int(text), text)
    return text


def _strict_enum(value: Any, names: dict[int, str], where: str) -> str | None:
    """As _enum, but a value outside the enumeration is an error naming the element and value."""
    if value is None or value == {}:
        return None
    known = _enum(value, names)
    if known not in names.values():
        raise MsrcDocumentError(
            f"{where}: unknown value {value!r} (known: {', '.join(names.values())})"
        )
    return known


def _float(value: Any, where: str) -> float | None:
    """A score: absent is NULL, anything that is not a number is an error naming the element."""
    if isinstance(value, bool):
        raise MsrcDocumentError(f"{where}: {value!r} is not a number")
    text = _text(value)
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        raise MsrcDocumentError(f"{where}: {text!r} is not a number") from None


def kb_digits(value: Any) -> str | None:
    """'KB5034127', ' 5034127 ' -> '5034127'; anything that is not a KB number -> None."""
    text = _text(value)
    if text is None:
        return None
    digits = re.sub(r"^KB", "", text.strip(), flags=re.IGNORECASE)
    return digits if digits.isdigit() else None


def split_supersedence(value: Any) -> list[str]:
    """'5077181; 5077212', 'KB1,KB2' -> ['5077181', '5077212'] (sorted, unique)."""
    text = _text(value)
    if not text:
        return []
    return sorted({d for d in (kb_digits(p) for p in re.split(r"[;,\s]+", text)) if d})


def parse_exploit_status(value: Any) -> dict[str, Any]:
    """'Publicly Disclosed:No;Exploited:Yes;Latest Software Release:...;DOS:N/A;' -> fields.

    Split on ';' then on the first ':'; keys may be missing, a trailing ';' may occur.
    """
    raw = _text(value)
    pairs: dict[str, str] = {}
    for part in (raw or "").split(";"):
        name, sep, val = part.partition(":")
        if sep and name.strip():
            pairs[name.strip().lower()] = val.strip()

    def yes_no(name: str) -> bool | None:
        val = pairs.get(name, "").lower()
        return True if val == "yes" else False if val == "no" else None

    def text(name: str) -> str | None:
        val = pairs.get(name)
        return val if val and val.upper() != "N/A" else None

    return {
        "publicly_disclosed": yes_no("publicly disclosed"),
        "exploited": yes_no("exploited"),
        "latest_release_exploitability": text("latest software release"),
        "older_release_exploitability": text("older software release"),
        "exploit_status_raw": raw,
    }


def document_release_month(document_id: str, title: str | None) -> tuple[str, date | None]:
    """(document_kind, release_month), checking the title against the id.

    Raises MsrcDocumentError for an unrecognised id or a title naming another month (MSRC has
    served the February title under 2026-Jan, issue #178).
    """
    if title == MARINER_TITLE:
        # Mariner pseudo-documents carry fake pre-2016 ids: their "month" is not a release month.
        return "mariner_release_notes", None
    match = _DOCUMENT_ID.match(document_id)
    if not match or match.group(2).lower() not in _MONTH_ABBR:
        raise MsrcDocumentError(f"unrecognised MSRC document id {document_id!r}")
    year, month = int(match.group(1)), _MONTH_ABBR[match.group(2).lower()]
    expected = rf"\b{MONTHS[month - 1]}\b.*\b{year}\b"
    if not title or not re.search(expected, title, flags=re.IGNORECASE):
        raise MsrcDocumentError(
            f"document {document_id!r} is titled {title!r}, not '{MONTHS[month - 1]} {year} ...': "
            "MSRC served the wrong month; keeping the previously ingested rows"
        )
    return "security_update", date(year, month, 1)


# ---- reading a file ----
