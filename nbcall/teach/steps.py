"""What each signaling message does, for step-through negotiation: the peer's next move and the states after it.

A phone made with ``step=True`` holds its outgoing signaling messages (see ``Phone.step``); the widget shows each
held message with :func:`explain_step`'s text, so a learner can predict the peer's move before letting it go.
"""

from __future__ import annotations

from typing import Any

from ..wire.faults import candidate_type

__all__ = ["explain_step"]

# message type -> (what the receiving phone does with it, the states after it: ours, the peer's)
_STEPS: dict[str, tuple[str, str, str]] = {
    "call": (
        "rings; when answered, its browser sets this offer as the remote description and makes an answer",
        "signalingState have-local-offer: we wait for the answer",
        "state ringing; signalingState have-remote-offer once answered",
    ),
    "answer": (
        "sets this answer as its remote description: both descriptions are agreed, and ICE pairs the "
        + "candidates both sides send",
        "signalingState stable",
        "signalingState stable; ICE checking, then connected when a candidate pair works",
    ),
    "ice": (
        "adds this candidate (addIceCandidate) and pairs it with its own candidates for connectivity checks",
        "unchanged: this candidate is one more way to reach us",
        "iceConnectionState checking, then connected once a pair answers",
    ),
    "hangup": (
        "closes its peer connection and stops its tracks",
        "state ended",
        "state ended",
    ),
    "decline": ("ends its call, with the reason", "state ended", "state ended"),
    "busy": ("ends its call: we are in another one", "unchanged", "state ended"),
    "room-invite": (
        "(the server) sends the invitee an invitation; its phone rings",
        "state calling until someone joins",
        "state ringing, invitation set",
    ),
    "room-accept": (
        "(the server) adds us to the room and tells the members; we then offer to each of them",
        "state connected, room set",
        "a new member in members",
    ),
    "room-decline": ("(the server) tells the inviter", "state ended", "error says we declined"),
    "room-leave": ("(the server) tells the other members", "state ended, no room", "one member fewer"),
    "room-link": ("(the server) counts our lost connection to that member", "unchanged", "unchanged"),
}


def explain_step(message: dict[str, Any]) -> dict[str, str]:
    """For a held message: ``{"type", "to", "peer_will", "after_us", "after_peer"}`` in words."""
    kind = str(message.get("type"))
    peer_will, after_us, after_peer = _STEPS.get(kind, ("acts on it", "unchanged", "unchanged"))
    if kind == "ice":
        peer_will = f"{peer_will} (a {candidate_type(message) or 'end-of-candidates'} candidate)"
    return {
        "type": kind,
        "to": str(message.get("to", "the server")),
        "peer_will": peer_will,
        "after_us": after_us,
        "after_peer": after_peer,
    }
