"""A minimal relay written plainly with websockets: the seed's design, a reference for bench/load.py.

A dict of peer ID -> connection; ``register`` stores the sender, every other
frame is parsed once to read ``to`` and forwarded unchanged. No limits, no
validation. It answers ``register`` with ``registered`` so that clients know
when to start (the seed's server answers nothing).

    python bench/naive_relay.py --port 8765

websockets' defaults are kept (permessage-deflate accepted when a client offers it,
keepalive pings every 20 s), as a plain server would have them.
"""

from __future__ import annotations

import argparse
import asyncio
import json

from websockets.asyncio.server import ServerConnection, serve

clients: dict[str, ServerConnection] = {}


async def handle(connection: ServerConnection) -> None:
    my_id = None
    try:
        async for frame in connection:
            msg = json.loads(frame)
            if msg.get("type") == "register":
                my_id = msg["from"]
                clients[my_id] = connection
                await connection.send(json.dumps({"type": "registered", "id": my_id}))
                continue
            target = clients.get(msg.get("to"))
            if target is not None:
                await target.send(frame)
    except Exception:  # noqa: BLE001, S110 - the seed's relay: one bad client only loses its own connection
        pass
    finally:
        if my_id is not None and clients.get(my_id) is connection:
            del clients[my_id]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    async with serve(handle, args.host, args.port) as server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
