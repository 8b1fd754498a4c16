"""A Peer's life in one process: a new Peer with a live one's ID takes it over, and a Peer dropped without
close() warns and frees its ID. No call is made, so these need no network namespace."""

from __future__ import annotations

import gc
import logging

import pytest
from support import RawPeer, wait_until_sync

from nbcall import Peer
from nbcall.call import kernel
from nbcall.exceptions import DuplicateID
from nbcall.server.server import SignalingServer, serve


def test_a_new_peer_with_a_live_peers_id_takes_it_over(server: SignalingServer) -> None:
    watcher = RawPeer(server.url, "W")
    old = Peer("A", server=server.url)
    new = Peer("A", server=server.url)
    try:
        assert new.online
        assert old.error == "replaced by a new phone"
        assert not old.online
        with pytest.raises(AssertionError, match="duplicate-id"):  # the ID is held: by the new Peer
            RawPeer(server.url, "A")
    finally:
        new.close()
        old.close()
        watcher.close()


def test_a_peer_of_another_process_still_gets_duplicate_id(server: SignalingServer) -> None:
    other = RawPeer(server.url, "A")
    try:
        with pytest.raises(DuplicateID):
            Peer("A", server=server.url)
    finally:
        other.close()


def test_a_peer_garbage_collected_without_close_warns_once_and_frees_its_id(
    server: SignalingServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="nbcall")
    peer = Peer("A", server=server.url)
    assert peer.online
    del peer
    gc.collect()
    warned = [r for r in caplog.records if "garbage-collected without close()" in r.getMessage()]
    assert len(warned) == 1

    def free() -> bool:
        try:
            RawPeer(server.url, "A").close()
        except AssertionError:
            return False
        return True

    wait_until_sync(free, "the collected Peer's ID to be free")


def test_a_peer_sends_the_token_in_a_header_and_its_repr_does_not_show_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    secured = kernel.run(serve(token="tok-2718281828"), timeout=5)
    peer = Peer("A", server=secured.url)
    try:
        assert "tok-2718281828" not in repr(peer)
        server_side = [r.getMessage() for r in caplog.records if r.name == "websockets.server"]
        assert "< GET /ws HTTP/1.1" in server_side and "< Authorization: ***" in server_side
        assert not [r for r in caplog.records if "tok-2718281828" in r.getMessage()]
    finally:
        peer.close()

        async def stop() -> None:
            secured.close()
            await secured.wait_closed()

        kernel.run(stop(), timeout=5)
