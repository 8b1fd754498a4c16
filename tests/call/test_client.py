"""A phone's signaling connection (nbcall.call.client) against a real server, on an event loop of the test's own."""

from __future__ import annotations

import asyncio
import threading

from nbcall.call.client import SignalingClient
from nbcall.server.server import serve


def test_a_message_queued_on_a_closed_connection_does_not_freeze_the_loop() -> None:
    """The connection closes with a message queued before the reader task ever ran: the relay must return
    (keeping the message for later), not retry the send forever without letting the loop run."""
    outcome: dict[str, object] = {}

    async def scenario() -> None:
        async with await serve() as server:
            client = SignalingClient(server.url, "P", reconnect_delays=None)
            await client.register()
            assert client._ws is not None
            await client._ws.close()  # closed, and the relay has not started its reader yet
            client._enqueue('{"type": "hangup", "to": "Q"}')
            outcome["reason"] = await asyncio.wait_for(client._relay(lambda message, size: None), 5)
            outcome["kept"] = list(client._outbox)

    # On a thread of its own: with the bug, this loop spins forever and only the join's deadline ends the test.
    thread = threading.Thread(target=asyncio.run, args=(scenario(),), daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), "the relay loop spun without yielding on a closed connection"
    assert "the signaling connection closed" in str(outcome["reason"])
    assert outcome["kept"] == ['{"type": "hangup", "to": "Q"}']
