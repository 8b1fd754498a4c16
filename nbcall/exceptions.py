"""Exceptions raised by nbcall.

Every error says what was wrong and with which value. Errors that cross the
signaling wire carry the ``code`` sent in ``{"type": "error", "code": ...}``.

Class tree::

    NbcallError
    └── SignalingError              code: wire error code, message: text for humans
        ├── BadJSON                 bad-json            frame is not valid JSON
        ├── BadMessage              bad-message         not an object, missing or wrong-typed field
        ├── UnknownType             unknown-type        "type" is not one the server knows
        ├── BinaryFrame             binary-frame        a binary frame where JSON text was expected
        ├── MessageTooBig           too-big             frame larger than max_message_size
        ├── BadID                   bad-id              peer ID breaks a naming rule
        ├── DuplicateID             duplicate-id        peer ID held by another connection
        ├── AlreadyRegistered       already-registered  connection already has another ID
        ├── NotRegistered           not-registered      message before "register"
        ├── WrongFrom               wrong-from          "from" differs from the registered ID
        ├── RateLimited             rate-limited        more messages per second than the server allows
        ├── RegistryUnavailable     registry-unavailable  (cluster) the shared registry (Redis) cannot be reached
        ├── ServerUnreachable       unreachable         (client side) no server answered at that URL
        └── RoomError               (no code of its own) a room message broke a rule of docs/rooms.md
            ├── InviteSelf          invite-self         a phone invited itself
            ├── Unavailable         unavailable         the invited phone is not online
            ├── NoRooms             no-rooms            a phone that did not register with "rooms": true
            ├── AlreadyAMember      already-a-member    the invited phone is in this room already
            ├── AlreadyInvited      already-invited     the invited phone has a pending invitation to this room
            ├── InAnotherRoom       in-another-room     the phone is a member of another room
            ├── NotAMember          not-a-member        the room is not the sender's (or not the peer's)
            ├── RoomFull            room-full           members and invitations would pass max_room_size
            ├── NotInvited          not-invited         no invitation to that room
            ├── InvitationExpired   invitation-expired  the invitation outlived invitation_ttl
            ├── TooManyRoomClaims   too-many-claims     one address re-created max_room_claims rooms nobody joined yet
            └── SfuUnavailable      sfu-unavailable     an SFU room without a working SFU (Janus) behind the server
    └── CallError                   a phone cannot do that now (not ringing, not connected, busy...)

Errors end a connection only where the server cannot go on serving it, with
these close codes (the reason says what to do):

* 1008 (policy violation): persistent rate-limit abuse; a slow reader whose
  pending messages passed ``max_pending_bytes`` ("too slow"); an ID taken over
  by a newer connection of the same phone (same ``secret``).
* 1009 (message too big): a frame larger than ``max_frame_size``.
* 1011 (internal error): a keepalive ping went unanswered, or a server bug.
* 1001 (going away): the server is shutting down; 1008 also when, in a cluster, the phone's ID was
  taken over by its newer connection on another node, or claimed on another node while this node
  was cut off from the registry.

Refusals before the WebSocket opens are HTTP responses with a plain-text body:
401 (missing or wrong token), 403 (origin not allowed), 404 (wrong path), 503
(``max_connections`` reached).

New wire codes get a subclass of :class:`SignalingError` with a class-level
``code``; :meth:`SignalingError.from_wire` then finds it by code, so a client
receiving an error message can raise the matching class.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "AlreadyAMember",
    "AlreadyInvited",
    "AlreadyRegistered",
    "BadID",
    "BadJSON",
    "BadMessage",
    "BinaryFrame",
    "CallError",
    "DuplicateID",
    "InAnotherRoom",
    "InvitationExpired",
    "InviteSelf",
    "MessageTooBig",
    "NbcallError",
    "NoRooms",
    "NotAMember",
    "NotInvited",
    "NotRegistered",
    "RateLimited",
    "RegistryUnavailable",
    "RoomError",
    "RoomFull",
    "ServerUnreachable",
    "SfuUnavailable",
    "SignalingError",
    "TooManyRoomClaims",
    "Unavailable",
    "UnknownType",
    "WrongFrom",
]


class NbcallError(Exception):
    """Base class of every exception nbcall raises on purpose."""


class SignalingError(NbcallError):
    """A signaling message was refused; ``code`` names why on the wire.

    ``in_reply_to`` is the ``type`` of the refused message, when it had one; ``room`` the room it was about,
    when it named one (so that a late refusal about an earlier room is not taken for one about the current).
    """

    code: str = "signaling-error"
    _by_code: ClassVar[dict[str, type[SignalingError]]] = {}

    def __init__(
        self,
        message: str,
        *,
        in_reply_to: str | None = None,
        code: str | None = None,
        room: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.in_reply_to = in_reply_to
        self.room = room
        if code is not None:
            self.code = code

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        # Only classes that define a code own it; refinements of a code (a subclass
        # without its own ``code``) inherit it. Two owners would make from_wire ambiguous.
        if "code" not in cls.__dict__:
            return
        owner = SignalingError._by_code.setdefault(cls.code, cls)
        if owner is not cls:
            raise TypeError(f"wire code {cls.code!r} already belongs to {owner.__qualname__}")

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    @classmethod
    def from_wire(cls, code: str, message: str, *, in_reply_to: str | None = None) -> SignalingError:
        """Build the exception matching an error received from a server.

        Unknown codes (from a newer server) give a plain :class:`SignalingError`
        carrying that code.

        Parameters
        ----------
        code
            The error message's ``code``.
        message
            Its text.
        in_reply_to
            The ``type`` of the message it refused.
        """
        subclass = SignalingError._by_code.get(code)
        if subclass is None:
            return SignalingError(message, in_reply_to=in_reply_to, code=code)
        return subclass(message, in_reply_to=in_reply_to)


class BadJSON(SignalingError):
    """The frame is not valid JSON."""

    code = "bad-json"


class BadMessage(SignalingError):
    """The JSON is not an object, or a field is missing or has the wrong type."""

    code = "bad-message"


class UnknownType(SignalingError):
    """The message's ``type`` is not one the server knows."""

    code = "unknown-type"


class BinaryFrame(SignalingError):
    """A binary frame arrived; signaling uses JSON text frames only."""

    code = "binary-frame"


class MessageTooBig(SignalingError):
    """The frame is larger than the server's ``max_message_size``."""

    code = "too-big"


class BadID(SignalingError):
    """A peer ID is empty, too long, unprintable or padded with whitespace."""

    code = "bad-id"


class DuplicateID(SignalingError):
    """The peer ID is already registered by another connection."""

    code = "duplicate-id"


class AlreadyRegistered(SignalingError):
    """The connection is registered under another ID already."""

    code = "already-registered"


class NotRegistered(SignalingError):
    """The connection sent something other than ``register`` before registering."""

    code = "not-registered"


class WrongFrom(SignalingError):
    """The message's ``from`` differs from the connection's registered ID."""

    code = "wrong-from"


class RateLimited(SignalingError):
    """The connection sent more messages per second than the server's ``max_rate`` allows."""

    code = "rate-limited"


class RegistryUnavailable(SignalingError):
    """A cluster node cannot reach its shared registry (Redis), so it cannot claim a new ID safely."""

    code = "registry-unavailable"


class ServerUnreachable(SignalingError):
    """No signaling server answered at the phone's URL (raised by the client, never sent)."""

    code = "unreachable"


class RoomError(SignalingError):
    """A room message broke one of the rules of docs/rooms.md; each subclass owns one code."""


class InviteSelf(RoomError):
    """A phone sent ``room-invite`` with its own ID as ``to``."""

    code = "invite-self"


class Unavailable(RoomError):
    """The phone invited into a room is not online."""

    code = "unavailable"


class NoRooms(RoomError):
    """The phone invited (or the sender) did not register with ``"rooms": true``."""

    code = "no-rooms"


class AlreadyAMember(RoomError):
    """The phone invited is a member of this room already."""

    code = "already-a-member"


class AlreadyInvited(RoomError):
    """The phone invited has a pending invitation to this room already."""

    code = "already-invited"


class InAnotherRoom(RoomError):
    """The phone is a member of another room (a phone is a member of at most one)."""

    code = "in-another-room"


class NotAMember(RoomError):
    """The room named is not the sender's room, or the peer named is not a member of it."""

    code = "not-a-member"


class RoomFull(RoomError):
    """Members plus pending invitations would pass the server's ``max_room_size``."""

    code = "room-full"


class NotInvited(RoomError):
    """``room-accept`` or ``room-decline`` for a room the sender has no invitation to."""

    code = "not-invited"


class InvitationExpired(RoomError):
    """``room-accept`` after the invitation outlived the server's ``invitation_ttl``."""

    code = "invitation-expired"


class TooManyRoomClaims(RoomError):
    """A client address re-creates more rooms after a restart than ``max_room_claims``, none rejoined yet."""

    code = "too-many-claims"


class SfuUnavailable(RoomError):
    """An SFU room cannot work: the server runs without ``--sfu``, or its Janus does not answer (the message
    names the URL)."""

    code = "sfu-unavailable"


class CallError(NbcallError):
    """A phone was asked for something its call state does not allow; the message says what to do."""
