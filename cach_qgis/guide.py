"""Help: the bundled user guide (``help/user-guide.html``, images inside), opened offline.

Nothing here depends on a web address: every Help button, the Help action and the Processing
algorithms' help open this one file, at the section that explains what is on screen.
``scripts/user_guide_html.py`` makes it from docs/user-guide.md.
"""

from __future__ import annotations

from pathlib import Path

from qgis.PyQt.QtCore import QUrl
from qgis.PyQt.QtGui import QDesktopServices
from qgis.PyQt.QtWidgets import QDialogButtonBox, QPushButton

from .wording import tr

GUIDE = Path(__file__).resolve().with_name("help") / "user-guide.html"

#: sections (heading ids of the guide) by what they explain
INDEX = "index-a-folder-of-rasters"
ADAPT = "index-a-folder-of-rasters"
RUNTIME = "runtime"
SEARCH = "search-by-text"
CLICK = "click-a-tile"
PROBLEMS = "when-something-goes-wrong"


def guide_url(section: str = "") -> QUrl:
    """The guide as a file URL, at ``section`` when given."""
    url = QUrl.fromLocalFile(str(GUIDE))
    if section:
        url.setFragment(section)
    return url


def open_guide(section: str = "") -> bool:
    """Open the guide in the system's browser; False when it could not be opened."""
    return QDesktopServices.openUrl(guide_url(section))


def add_help_button(buttons: QDialogButtonBox, section: str) -> QPushButton:
    """A Help button in a dialog's button box that opens the guide at ``section``."""
    button = buttons.addButton(QDialogButtonBox.StandardButton.Help)
    button.setToolTip(tr("Open the CACH user guide (bundled with the plugin, works offline)"))
    buttons.helpRequested.connect(lambda: open_guide(section))
    return button
