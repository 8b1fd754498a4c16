"""Session descriptions explained: every line of an SDP offer or answer with what it means.

``explain_sdp(text)`` returns an :class:`SdpExplanation`, which displays as a table in a notebook and reads as
a list of :class:`SdpLine`. :func:`compare` says what an answer chose from its offer. The phone keeps the
descriptions of each call (:class:`Descriptions`) and sends their explanations to its widget's SDP panel.

The lines are parsed by sdp-transform (the Python port of the JavaScript parser most WebRTC projects use), one
line at a time, so that each line keeps its own parsed fields; nbcall adds only the meanings. By job:
:mod:`~nbcall.teach.sdp.meanings` (what each kind of line means), :mod:`~nbcall.teach.sdp.explain` (one
description, line by line) and :mod:`~nbcall.teach.sdp.negotiation` (an offer and its answer, per peer).
"""

from .explain import SdpExplanation, SdpLine, Section, explain_candidate, explain_sdp
from .negotiation import Descriptions, Negotiation, compare

__all__ = [
    "Descriptions",
    "Negotiation",
    "SdpExplanation",
    "SdpLine",
    "Section",
    "compare",
    "explain_candidate",
    "explain_sdp",
]
