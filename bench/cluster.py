"""Cluster benchmark: relays that cross nodes (two `nbcall serve --redis` + redis-server) beside one node, same run.

Reuses bench/load.py's generator (its clients, modes and figures). For the cluster, client i connects to node
i % 2 and is paired with client i ^ 1, so every relayed message crosses nodes. Server CPU is the sum over the
node processes; Redis's own CPU is reported beside it. Nodes and Redis are pinned to core 0, the generator to
core 1, as in load.py.

    .venv/bin/python bench/cluster.py --quick        # 3 s phases (about 2 min)
    .venv/bin/python bench/cluster.py --clients 4000 --rate 10000 --idle 4000 --failover 500

Modes: throughput (saturation: --clients clients, --window in flight each), fixed (--rate msg/s total,
latency p50/p99), idle (memory per idle connection, with and without --redis), failover (--failover
phones on a node that is killed with SIGKILL: seconds until every one of them is registered again, with
its ID, on the other node). Every loop is bounded in count and in time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
import load  # bench/load.py, beside this file

ROOT = BENCH.parent


class Proc:
    """A process pinned to the server core, measured like load.Server (CPU seconds, RSS)."""

    protocol = "nbcall"
    path = "/ws"

    def __init__(self, name: str, cmd: list[str], port: int, log: Path) -> None:
        self.name, self.port = name, port
        self.log = open(log, "ab")  # noqa: SIM115 - closed in stop()
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(
            ["taskset", "-c", str(load.SERVER_CORE), *cmd],
            cwd=ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=load._die_with_parent,  # noqa: PLW1509
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                load.socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{name} did not start; see {log}") from None
                time.sleep(0.05)

    status_kb = load.Server.status_kb
    cpu_seconds = load.Server.cpu_seconds

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.log.close()


def node(name: str, redis_url: str | None, logs: Path) -> Proc:
    port = load.free_port()
    cli = ["--port", str(port), "--node-id", name]
    if redis_url is not None:
        cli += ["--redis", redis_url]
    code = f"import sys; from nbcall.cli import main; sys.exit(main(['serve', *{cli!r}]))"
    return Proc(name, [sys.executable, "-c", code], port, logs / f".{name}.log")


class Deployment:
    """Looks like one load.Server to load.py's measures: figures are sums over its nodes."""

    protocol = "nbcall"
    path = "/ws"

    def __init__(self, nodes: list[Proc], redis: Proc | None) -> None:
        self.nodes, self.redis = nodes, redis
        self.port = nodes[0].port

    def cpu_seconds(self) -> float:
        return sum(n.cpu_seconds() for n in self.nodes)

    def status_kb(self, field: str) -> int:
        return sum(n.status_kb(field) for n in self.nodes)

    def stop(self) -> None:
        for n in self.nodes:
            n.stop()


_open_clients = load.open_clients


async def open_clients(run: Any, server: Any, count: int, **kwargs: Any) -> tuple[list[Any], dict[str, Any]]:
    """load.open_clients, with client i on node i % len(nodes): partners (i, i ^ 1) are on different nodes."""
    if not isinstance(server, Deployment) or len(server.nodes) == 1:
        target = server.nodes[0] if isinstance(server, Deployment) else server
        return await _open_clients(run, target, count, **kwargs)
    parts = []
    for k, target in enumerate(server.nodes):
        _Client.offset = k * count  # IDs unique across the deployment
        parts.append(await _open_clients(run, target, (count + 1 - k) // 2, **kwargs))
    _Client.offset = 0
    # Interleave: index 2j on node 1, 2j + 1 on node 2.
    clients: list[Any] = []
    for pair in zip(parts[0][0], parts[1][0]):
        clients.extend(pair)
    for i, client in enumerate(clients):
        client.idx = i
    failures = {**parts[0][1], **{f"n2: {k}": v for k, v in parts[1][1].items()}}
    return clients, failures


class _Client(load.Client):  # type: ignore[misc]
    """load.Client whose ID is offset, so that clients of two nodes never share one."""

    offset = 0

    def __init__(self, run: Any, idx: int, server: Any, deflate: bool) -> None:
        super().__init__(run, idx + _Client.offset, server, deflate)


load.open_clients = open_clients  # the measures look them up in their module
load.Client = _Client


class Cluster:
    """redis-server and nodes, started fresh for each figure."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.folder = Path(tempfile.mkdtemp(prefix="nbcall-bench-redis-"))
        port = load.free_port()
        self.redis_url = f"redis://127.0.0.1:{port}/0"
        self.redis = Proc(
            "redis",
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.folder), "--daemonize", "no"],
            port,
            logs / ".redis.log",
        )  # fmt: skip

    def stop(self) -> None:
        self.redis.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


async def measure(kind: str, figure: str, args: argparse.Namespace) -> dict[str, Any]:
    """One figure on a fresh setup: ``kind`` is ``local`` (one node, no Redis), ``redis1`` (one node with
    --redis) or ``cross`` (two nodes, every pair split across them)."""
    logs = BENCH / "results"
    cluster = Cluster(logs) if kind != "local" else None
    redis_url = cluster.redis_url if cluster is not None else None
    count = 2 if kind == "cross" else 1
    nodes = [node(f"{kind}-n{k + 1}", redis_url, logs) for k in range(count)]
    deployment = Deployment(nodes, cluster.redis if cluster else None)
    redis_cpu0 = cluster.redis.cpu_seconds() if cluster else 0.0
    try:
        if figure == "throughput":
            out = await load.measure_throughput(
                deployment, args.clients, args.window, args.duration, args.warmup
            )
        elif figure == "fixed":
            out = await load.measure_fixed_rate(
                deployment, args.clients, args.rate, args.duration, args.warmup
            )
        elif figure == "idle":
            out = await load.measure_idle(deployment, args.idle, args.idle_timeout)
        else:
            out = await measure_failover(deployment, args.failover)
        if cluster is not None:
            out["redis_cpu_s"] = round(cluster.redis.cpu_seconds() - redis_cpu0, 2)
        out.pop("other_samples", None)
        relayed = out.get("relayed_in_phase")
        if relayed:
            out["server_us_per_msg"] = round(out["server_cpu_s"] / relayed * 1e6, 2)
            if cluster is not None:
                out["redis_us_per_msg"] = round(out["redis_cpu_s"] / relayed * 1e6, 2)
        return out
    finally:
        deployment.stop()
        if cluster is not None:
            cluster.stop()


async def measure_failover(deployment: Deployment, count: int) -> dict[str, Any]:
    """``count`` phones on node 1 (each with a secret), node 1 killed: time until all are back on node 2."""
    from websockets.asyncio.client import connect

    n1, n2 = deployment.nodes
    sem = asyncio.Semaphore(100)

    async def register(port: int, i: int) -> Any:
        async with sem:
            ws = await connect(f"ws://127.0.0.1:{port}/ws", open_timeout=30)
            await ws.send(json.dumps({"type": "register", "from": f"p{i}", "secret": f"secret-{i}"}))
            reply = json.loads(await asyncio.wait_for(ws.recv(), 30))
            if reply.get("type") != "registered":
                await ws.close()
                raise RuntimeError(f"p{i}: {reply}")
            return ws

    first = await asyncio.gather(*(register(n1.port, i) for i in range(count)))
    killed = time.monotonic()
    n1.proc.kill()
    # Each phone notices its connection closed, then reconnects to the next URL (as nbcall.call.client does).
    done: list[float] = []

    async def fail_over(i: int, ws: Any) -> Any:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ws.wait_closed(), 30)
        for _ in range(40):  # bounded: 40 attempts, a quarter second apart at most
            try:
                again = await register(n2.port, i)
            except (OSError, RuntimeError, asyncio.TimeoutError):
                await asyncio.sleep(0.25)
                continue
            done.append(time.monotonic() - killed)
            return again
        return None

    back = await asyncio.gather(*(fail_over(i, ws) for i, ws in enumerate(first)))
    for ws in back:
        if ws is not None:
            await ws.close()
    done.sort()
    return {
        "phones": count,
        "back_online": len(done),
        "p50_s": round(done[len(done) // 2], 3) if done else None,
        "all_back_s": round(done[-1], 3) if done else None,
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    plan = [
        ("throughput", ["local", "cross"]),
        ("fixed", ["local", "cross"]),
        ("idle", ["local", "redis1"]),
        ("failover", ["cross"]),
    ]
    modes = args.modes.split(",")
    results: dict[str, Any] = {}
    for figure, kinds in plan:
        if figure not in modes:
            continue
        for kind in kinds:
            print(f"{figure} / {kind} ...", flush=True)
            try:
                results[f"{figure}/{kind}"] = r = await asyncio.wait_for(measure(kind, figure, args), 300)
            except (RuntimeError, asyncio.TimeoutError) as exc:
                results[f"{figure}/{kind}"] = r = {"error": repr(exc)}
            print("  " + json.dumps(r), flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 s phases, fewer clients")
    parser.add_argument("--modes", default="throughput,fixed,idle,failover")
    parser.add_argument("--clients", type=int, default=4000)
    parser.add_argument("--window", type=int, default=2)
    parser.add_argument("--rate", type=int, default=10_000)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=1)
    parser.add_argument("--idle", type=int, default=4000)
    parser.add_argument("--idle-timeout", type=float, default=120)
    parser.add_argument("--failover", type=int, default=500, help="phones on the node that is killed")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.quick:
        args.duration = 3
    if shutil.which("redis-server") is None:
        sys.exit("needs redis-server (apt-get install redis-server)")
    os.sched_setaffinity(0, {load.GENERATOR_CORE})
    started = time.time()
    results = asyncio.run(main_async(args))
    out = Path(args.out or BENCH / "results" / f"cluster-{datetime.date.today()}.json")
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    meta = {"commit": commit.stdout.strip(), "args": vars(args), "load_average": os.getloadavg(),
            "wall_s": round(time.time() - started)}  # fmt: skip
    out.write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
