"""The JavaScript bridge for HTML5 players (``nps-bridge.js``), shipped with the package.

A box UI includes it with a ``<script>`` tag and attaches it to its ``<video>`` (and
Shaka Player, dash.js or hls.js); it posts player events to the agent's
``player.source = "http"`` endpoint (:mod:`stb_widget.sources.http_events`). See
docs/agent.md, "HTML5 players".
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

#: Where the installed bridge is (copy it next to the box UI's pages, or serve it).
BRIDGE_JS: Final = Path(__file__).with_name("nps-bridge.js")

__all__ = ["BRIDGE_JS"]
