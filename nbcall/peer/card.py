"""The status card a :class:`~nbcall.Peer` shows in a notebook: who, online or not, its state and peer, the
others online, the transfer under way and the last error (a Peer has no browser half, so no camera UI)."""

from __future__ import annotations

import html
from typing import Any

from ..call.machine import IN_CALL
from ..call.progress import describe as describe_progress

__all__ = ["PeerCard"]


class PeerCard:
    """Mixin of :class:`~nbcall.Peer`: its HTML card, kept up to date while it is displayed."""

    user_id: str
    state: str
    peer: str
    online: bool
    error: str
    peers: list[str]
    progress: dict[str, Any]
    _display: Any
    observe: Any

    def _repr_html_(self) -> str:
        colour = {"connected": "#2e7d32", "failed": "#c62828", "ringing": "#ef6c00", "calling": "#ef6c00"}
        state = self.state
        peer = f" with <b>{html.escape(self.peer)}</b>" if self.peer and state in IN_CALL else ""
        online = "online" if self.online else "offline"
        error = f"<div style='color:#c62828'>{html.escape(self.error)}</div>" if self.error else ""
        others = html.escape(", ".join(self.peers)) or "nobody"
        progress = ""
        if self.progress:
            share = self.progress["done"] / self.progress["total"] if self.progress.get("total") else None
            bar = f"<progress max='1' value='{share:.3f}'></progress> " if share is not None else ""
            text = html.escape(describe_progress(self.progress))
            progress = f"<div class='nbcall-peer-progress'>{bar}{text}</div>"
        return (
            f"<div class='nbcall-peer' data-user='{html.escape(self.user_id)}' data-state='{state}' "
            "style='display:inline-block;border:1px solid #ccc;border-radius:6px;padding:6px 10px;"
            "font:13px sans-serif'>"
            f"<b>{html.escape(self.user_id)}</b> (Python peer, {online}): "
            f"<span style='color:{colour.get(state, '#555')}'>{state}</span>{peer}"
            f"<div style='color:#777'>others online: {others}</div>{progress}{error}</div>"
        )

    def _ipython_display_(self) -> None:
        """Show a status card that follows the peer's state (no camera UI)."""
        from IPython.display import HTML, display

        self._display = display(HTML(self._repr_html_()), display_id=True)
        self.observe(lambda change: self._refresh_card(), ["online", "peers", "progress"])

    def _refresh_card(self) -> None:
        try:
            from IPython.display import HTML

            self._display.update(HTML(self._repr_html_()))
        except Exception:  # noqa: BLE001 (no notebook to update any more: stop trying)
            self._display = None
