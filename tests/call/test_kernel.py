"""nbcall.serve() from the notebook's thread: the handle it returns runs everything on the background loop."""

from __future__ import annotations

import json
import socket
import threading

from websockets.sync.client import connect

import nbcall
from nbcall.call import kernel
from nbcall.widget.phone import Phone


def register(url: str, peer_id: str) -> dict[str, object]:
    with connect(url, open_timeout=5) as ws:
        ws.send(json.dumps({"type": "register", "from": peer_id}))
        return json.loads(ws.recv(timeout=5))


def test_the_handle_serves_phones_and_closes_twice_from_a_plain_thread() -> None:
    assert threading.current_thread() is not kernel._thread  # the notebook's thread, not the loop's
    server = nbcall.serve()
    assert isinstance(server, kernel.ServerHandle)
    assert server.host == "127.0.0.1" and server.port > 0
    assert server.url.startswith(f"{server.url_without_token}?token=")
    assert "token" not in repr(server) and server.url_without_token in repr(server)
    assert kernel.default_server() is server
    phone = Phone("A", server=server.url)  # registers before returning, or raises
    try:
        assert register(server.url, "B") == {"type": "registered", "id": "B"}
    finally:
        phone.close()
    server.close()
    server.close()  # idempotent
    assert server.closed and "closed" in repr(server)
    with socket.socket() as sock:  # the port is free again
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((server.host, server.port))


def test_close_server_and_the_context_manager_close_it_once() -> None:
    with nbcall.serve(token=None) as server:
        assert register(server.url, "A") == {"type": "registered", "id": "A"}
    assert server.closed
    kernel.close_server(server)  # already closed: nothing to do
    other = nbcall.serve(token=None)
    kernel.close_server(other)
    assert other.closed and kernel.default_server() is not other
    kernel.close_server(kernel.default_server())


def test_concurrent_closes_from_several_threads_all_return_once_closed() -> None:
    server = nbcall.serve()
    done: list[bool] = []
    threads = [
        threading.Thread(target=lambda: (server.close(), done.append(server.closed))) for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert done == [True] * 4
