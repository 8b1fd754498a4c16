"""The Phone widget: its Python half (an adapter of the call machine), the widget protocol shared with the
browser half (js/, bundled into ``static/``), and the Jupyter server extension that speeds up its messages."""

from .phone import STATES, Phone

__all__ = ["STATES", "Phone"]
