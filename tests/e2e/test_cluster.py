"""Two `nbcall serve --redis` nodes, real Chromium phones in JupyterLab: a call across nodes outlives a node."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from harness import Lab
from playwright.sync_api import Page
from support import Node, RedisServer

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[RedisServer, Node, Node]]:
    store = RedisServer(tmp_path / "redis").start()
    nodes: list[Node] = []
    try:
        nodes = [Node(store.url, name, tmp_path) for name in ("n1", "n2")]
        yield store, nodes[0], nodes[1]
    finally:
        for node in nodes:
            node.stop()
        store.stop()


def test_a_call_across_two_nodes_outlives_one_node_killed_and_its_phone_moves_keeping_its_id(
    lab: Lab, page: Page, cluster: tuple[RedisServer, Node, Node]
) -> None:
    store, n1, n2 = cluster
    setup = (
        "import nbcall, redis\n"
        f"registry = redis.Redis.from_url({store.url!r}, decode_responses=True)\n"
        f"a = nbcall.Phone('A', server={[n1.url]!r})\n"
        f"b = nbcall.Phone('B', server={[n2.url, n1.url]!r}, auto_answer=True)\n"
        "display(a, b)"
    )
    nb = lab.run_notebook(page, "cluster.ipynb", [setup], phones=("A", "B"))
    nb.wait_until("a.online and b.online and a.peers == ['B']", timeout=15)
    owners = redis.Redis.from_url(store.url, decode_responses=True)
    assert owners.hgetall("nbcall:owner") == {"A": "n1", "B": "n2"}  # one phone on each node

    nb.run(
        "a.call('B')\nawait a.wait_for('connected', timeout=20)\nawait b.wait_for('connected', timeout=20)"
    )
    nb.run("a.send('before, from A'); b.send('before, from B')")
    nb.wait_until("a.messages and b.messages")
    assert nb.value("(a.messages[-1].data, b.messages[-1].data)") == ["before, from B", "before, from A"]

    killed = time.monotonic()
    n2.kill()  # SIGKILL: B's node goes away mid-call
    # Peer to peer, the call needs no node: data still flows both ways.
    nb.run("a.send('during, from A'); b.send('during, from B')")
    nb.wait_until("a.messages[-1].data == 'during, from B' and b.messages[-1].data == 'during, from A'")
    # B moves to node 1 and keeps its ID (its secret reclaims it).
    nb.wait_until("b.online and a.online and registry.hget('nbcall:owner', 'B') == 'n1'", timeout=20)
    elapsed = time.monotonic() - killed
    assert owners.hget("nbcall:owner", "B") == "n1"
    assert nb.value("b.server_url") == n1.url  # the phone says where it is registered now
    assert nb.value("(a.state, b.state, a.peers, b.peers)") == ["connected", "connected", ["B"], ["A"]]
    nb.run("a.send('after, from A'); b.send('after, from B')")
    nb.wait_until("a.messages[-1].data == 'after, from B' and b.messages[-1].data == 'after, from A'")
    # And signaling works again through the surviving node: the hangup reaches B.
    nb.run("a.hangup()\nawait b.wait_for('ended', timeout=10)")
    assert nb.value("b.error") == "A hung up"
    print(f"B back online on node 1 {elapsed:.1f} s after its node was killed")
