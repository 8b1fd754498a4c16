"""The records a member reports after a restart (nbcall/server/sfu_record.py): signed with the room key, bound to
one member of one room, holding no lock of the VideoRoom. Pure: no sockets."""

from __future__ import annotations

import pytest

from nbcall.exceptions import BadMessage
from nbcall.server.sfu_messages import sfu_record_field
from nbcall.server.sfu_record import MAX_RECORD, derive, seal, unseal

KEY = b"k" * 32
RECORD = {"room": "s-1", "member": "A", "session": 12, "videoroom": 34, "feed": 56}


def test_a_record_comes_back_only_unaltered_under_its_key_for_its_member_and_room() -> None:
    text = seal(KEY, RECORD)
    assert unseal(KEY, text, "s-1", "A") == RECORD
    body, signature = text.split(".")
    altered = seal(KEY, {**RECORD, "feed": 57}).split(".")[0]
    for forged, room, member, key in (
        (f"{altered}.{signature}", "s-1", "A", KEY),  # another member's feed, say
        (text, "s-1", "B", KEY),  # B presenting A's record
        (text, "s-2", "A", KEY),
        (text, "s-1", "A", b"x" * 32),  # a server with another key
        (body, "s-1", "A", KEY),
        ("x" * (MAX_RECORD + 1), "s-1", "A", KEY),
        (42, "s-1", "A", KEY),
    ):
        assert unseal(key, forged, room, member) is None


def test_the_videorooms_locks_come_from_the_key_and_differ_by_room_and_member() -> None:
    pin = derive(KEY, "pin", "s-1", 34)
    assert pin == derive(KEY, "pin", "s-1", 34) and len(pin) == 32
    others = {derive(KEY, "pin", "s-2", 34), derive(KEY, "secret", "s-1", 34), derive(b"x" * 32, "pin", "s-1", 34),
              derive(KEY, "token", "s-1", 34, "A"), derive(KEY, "token", "s-1", 34, "B")}  # fmt: skip
    assert pin not in others and len(others) == 5
    assert pin not in seal(KEY, RECORD)


def test_a_register_s_sfu_field_is_a_short_string_or_nothing() -> None:
    assert sfu_record_field({"sfu": "abc.def"}) == "abc.def"
    assert sfu_record_field({}) is None
    for bad in (42, ["a"], "x" * (MAX_RECORD + 1)):
        with pytest.raises(BadMessage, match="field 'sfu' of a 'register'.*sfu-record"):
            sfu_record_field({"sfu": bad})
