"""The exception tree: wire codes map to classes and back."""

from __future__ import annotations

import pytest

from nbcall.exceptions import BadMessage, DuplicateID, NbcallError, RateLimited, SignalingError


def test_error_received_from_a_server_becomes_the_matching_class() -> None:
    exc = SignalingError.from_wire("duplicate-id", "ID 'A' is taken", in_reply_to="register")
    assert type(exc) is DuplicateID
    assert (exc.code, exc.message, exc.in_reply_to) == ("duplicate-id", "ID 'A' is taken", "register")
    assert str(exc) == "duplicate-id: ID 'A' is taken"
    assert isinstance(exc, NbcallError)


def test_unknown_wire_code_from_a_newer_server_keeps_its_code() -> None:
    exc = SignalingError.from_wire("teleport-failed", "try walking")
    assert type(exc) is SignalingError and exc.code == "teleport-failed"


def test_rate_limited_has_its_own_class() -> None:
    exc = SignalingError.from_wire("rate-limited", "slow down")
    assert type(exc) is RateLimited and exc.in_reply_to is None


def test_refinements_inherit_a_code_but_a_second_owner_is_refused() -> None:
    class MissingField(BadMessage):
        pass

    assert MissingField("x").code == "bad-message"
    assert type(SignalingError.from_wire("bad-message", "x")) is BadMessage
    with pytest.raises(TypeError, match="already belongs to DuplicateID"):

        class Taken(SignalingError):
            code = "duplicate-id"
