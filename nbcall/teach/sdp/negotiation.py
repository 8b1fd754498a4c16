"""An offer and its answer side by side: what the answer chose (:func:`compare`), and the descriptions a
phone keeps for each peer (:class:`Descriptions`), explained on demand as a :class:`Negotiation`."""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

from .explain import SdpExplanation, Section, explain_sdp

__all__ = ["Descriptions", "Negotiation", "compare"]


def compare(offer: Any, answer: Any) -> list[dict[str, Any]]:
    """What the answer chose from the offer, section by section: one dict per m-section with ``mid``,
    ``kind``, ``offered`` and ``accepted`` codec names, ``direction`` (offer -> answer), ``dtls`` (who is the
    DTLS client) and ``note`` in words; the data channel's section also has ``max_message_size``, the largest
    message each side may send (``{"offerer_sends", "answerer_sends"}`` in bytes, None for no limit): each
    direction is limited by its receiver's ``a=max-message-size``, 64 KiB when it has none (RFC 8841 §6)."""
    o = offer if isinstance(offer, SdpExplanation) else explain_sdp(offer)
    a = answer if isinstance(answer, SdpExplanation) else explain_sdp(answer)
    choices = []
    for index, offered in enumerate(o.sections):
        answered = a.sections[index] if index < len(a.sections) else None
        choice: dict[str, Any] = {"mid": offered.mid, "kind": offered.kind, "offered": _names(offered)}
        if answered is None:
            choice.update(
                accepted=[],
                direction=f"{offered.direction} -> (missing)",
                dtls="",
                note="the answer has no such section",
            )
            choices.append(choice)
            continue
        accepted = _names(answered)
        choice["accepted"] = accepted
        choice["direction"] = f"{offered.direction} -> {answered.direction}"
        choice["dtls"] = {
            "active": "the answerer is the DTLS client",
            "passive": "the offerer is the DTLS client",
        }.get(answered.setup, answered.setup)
        if answered.port == 0:
            note = "rejected: nothing flows in this section"
        elif offered.kind == "application":
            # Each direction is limited by its receiver's max-message-size (RFC 8841 §6).
            limits = {
                "offerer_sends": _message_limit(answered.max_message_size),
                "answerer_sends": _message_limit(offered.max_message_size),
            }
            choice["max_message_size"] = limits
            note = (
                f"the data channel: the offerer sends messages up to {_size(limits['offerer_sends'])} (the "
                f"answer's max-message-size), the answerer up to {_size(limits['answerer_sends'])} (the offer's)"
            )
        else:
            dropped = [c for c in choice["offered"] if c not in accepted]
            first = accepted[0] if accepted else "nothing"
            note = f"{first} first" + (f"; dropped {', '.join(dropped)}" if dropped else "; every codec kept")
            note += f"; {_flow(offered.direction, answered.direction)}"
        choice["note"] = note
        choices.append(choice)
    return choices


#: The largest message a side receives when its description has no a=max-message-size (RFC 8841 §6).
DEFAULT_MAX_MESSAGE_SIZE = 65536


def _message_limit(value: int | None) -> int | None:
    """The receiver's limit in bytes: 64 KiB when the attribute is missing, None (no limit) for 0."""
    if value is None:
        return DEFAULT_MAX_MESSAGE_SIZE
    return value or None


def _size(limit: int | None) -> str:
    return "any size (max-message-size 0)" if limit is None else f"{limit} bytes"


def _names(section: Section) -> list[str]:
    names: list[str] = []
    for codec in section.codecs:
        name = str(codec["codec"])
        if name not in names:
            names.append(name)
    return names


def _flow(offered: str, answered: str) -> str:
    offerer = offered in ("sendrecv", "sendonly") and answered in ("sendrecv", "recvonly")
    answerer = answered in ("sendrecv", "sendonly")
    return ", ".join(
        [
            "the offerer sends" if offerer else "the offerer sends nothing",
            "the answerer sends" if answerer else "the answerer sends nothing",
        ]
    )


class Negotiation:
    """One peer connection's descriptions: the local and the remote, explained, and what the answer chose."""

    def __init__(self, peer: str, local: SdpExplanation | None, remote: SdpExplanation | None) -> None:
        self.peer = peer
        self.local = local
        self.remote = remote

    @property
    def offer(self) -> SdpExplanation | None:
        return next((d for d in (self.local, self.remote) if d is not None and d.type == "offer"), None)

    @property
    def answer(self) -> SdpExplanation | None:
        return next((d for d in (self.local, self.remote) if d is not None and d.type == "answer"), None)

    @property
    def choices(self) -> list[dict[str, Any]]:
        """What the answer chose from the offer (empty until both are known)."""
        offer, answer = self.offer, self.answer
        return compare(offer, answer) if offer is not None and answer is not None else []

    def dropped(self) -> set[int]:
        """The numbers of the offer's codec lines (``a=rtpmap``) whose payload type the answer left out."""
        offer, answer = self.offer, self.answer
        if offer is None or answer is None:
            return set()
        kept = {(s.index, c["payload"]) for s in answer.sections if s.port != 0 for c in s.codecs}
        index = {s.title: s.index for s in offer.sections}
        return {
            x.number
            for x in offer
            if x.kind == "rtp" and (index.get(x.section), x.fields.get("payload")) not in kept
        }

    def to_json(self) -> dict[str, Any]:
        """The widget's ``sdp`` message: both descriptions, the offer's codec lines the answer left out
        marked ``"dropped": true``, and what the answer chose."""
        dropped = self.dropped()
        sides: dict[str, Any] = {}
        for side, explained in (("local", self.local), ("remote", self.remote)):
            if explained is None:
                sides[side] = None
                continue
            shown = explained.to_json()
            if explained is self.offer:
                for line in shown["lines"]:
                    if line["n"] in dropped:
                        line["dropped"] = True
            sides[side] = shown
        return {"type": "sdp", "peer": self.peer, **sides, "choices": self.choices}

    def __repr__(self) -> str:
        return f"<Negotiation with {self.peer!r}: local {self.local!r}, remote {self.remote!r}>"

    def _repr_html_(self) -> str:
        choices = "".join(
            f"<li><b>{html.escape(c['kind'])} (mid {html.escape(str(c['mid']))})</b>: {html.escape(c['note'])}; "
            f"{html.escape(c['direction'])}; {html.escape(c['dtls'])}</li>"
            for c in self.choices
        )
        cells = "".join(
            f'<td style="vertical-align:top">{d._repr_html_() if d else "(none yet)"}</td>'
            for d in (self.local, self.remote)
        )
        return (
            f"<div><b>What the answer chose</b><ul>{choices or '<li>(no answer yet)</li>'}</ul>"
            f"<table><tr><th>local (this phone)</th><th>remote ({html.escape(self.peer)})</th></tr><tr>{cells}</tr></table></div>"
        )


class Descriptions:
    """The last offer/answer sent to and received from each peer, as raw text; explained on demand."""

    def __init__(self) -> None:
        self._raw: dict[str, dict[str, str]] = {}

    def record(self, direction: str, message: Mapping[str, Any]) -> str | None:
        """Keep the description of a ``call`` or ``answer`` message sent (``"out"``) or received (``"in"``);
        returns the peer it belongs to, or None when the message carries none."""
        peer = message.get("to") if direction == "out" else message.get("from")
        sdp = message.get("sdp")
        if not isinstance(peer, str) or not isinstance(sdp, str) or direction not in ("in", "out"):
            return None
        sides = self._raw.setdefault(peer, {})
        if message.get("type") == "call":
            sides.clear()  # a new offer starts a new negotiation
        sides["local" if direction == "out" else "remote"] = sdp
        return peer

    def peers(self) -> list[str]:
        return list(self._raw)

    def get(self, peer: str) -> Negotiation | None:
        sides = self._raw.get(peer)
        if sides is None:
            return None
        local, remote = sides.get("local"), sides.get("remote")
        return Negotiation(
            peer,
            explain_sdp(local) if local is not None else None,
            explain_sdp(remote) if remote is not None else None,
        )
