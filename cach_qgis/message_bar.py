"""Telling the analyst: the message bar and the CACH log (errors never become exception
dialogs), wording's levels as QGIS's, and the panels' error colour."""

from __future__ import annotations

from typing import Any

from qgis.core import Qgis

from . import wording
from .runtime_client import log
from .wording import tr

LEVELS = {
    wording.INFO: Qgis.MessageLevel.Info,
    wording.SUCCESS: Qgis.MessageLevel.Success,
    wording.WARNING: Qgis.MessageLevel.Warning,
    wording.CRITICAL: Qgis.MessageLevel.Critical,
}
ERROR_COLOUR = "#b2182b"


def error_html(text: str) -> str:
    """``text`` in the panels' error colour (already translated: markup only here)."""
    return f"<span style='color:{ERROR_COLOUR}'>{text}</span>"


def push(
    iface: Any,
    text: str,
    level: Qgis.MessageLevel = Qgis.MessageLevel.Info,
    duration: int = 8,
    details: str = "",
) -> None:
    """``text`` (already translated) in the CACH log and on the message bar; ``details``
    behind the bar's "more"."""
    log(f"{text} {details}".strip(), level)
    bar = iface.messageBar() if iface is not None else None
    if bar is None:
        return
    if details:
        bar.pushMessage(tr("CACH"), text, details, level=level, duration=duration)
    else:
        bar.pushMessage(tr("CACH"), text, level=level, duration=duration)
