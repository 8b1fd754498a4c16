"""Load test for signaling servers: nbcall's, a naive websockets relay and PeerJS, side by side.

    .venv/bin/python bench/load.py [--quick] [--runs 3] [--servers nbcall,naive,peerjs]

Each server runs as a subprocess pinned to core 0 (``taskset -c 0``); this
process, the load generator, pins itself to core 1. The generator is a
hand-rolled websocket client on raw asyncio protocols (uvloop when installed):
handshake, masked text frames, frame parsing, nothing else, so that its cost
per message stays far below a server's. See bench/README.md for what each
figure means.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime
import gc
import hashlib
import json
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import time
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
SERVER_CORE, GENERATOR_CORE = 0, 1
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455
TOKEN = "bench-secret-token"

# Candidate-sized payload (~300 bytes on the wire). "~SEQ~TIMESTAMP~" is where the
# generator reads the sequence number and the send time back; no other "~" occurs.
CANDIDATE = (
    "candidate:842163049 1 udp 1677729535 203.0.113.7 49152 typ srflx raddr 10.0.0.5 "
    "rport 49152 generation 0 ufrag EsAw network-id 1 network-cost 10"
)
STAMP = b"%010d~%016d"  # seq, perf_counter_ns
STAMP_LEN = 10 + 1 + 16


def mask_int(mask: bytes, n: int) -> int:
    """The 4-byte masking key repeated over n bytes, as an int to XOR a big-endian payload with."""
    return int.from_bytes((mask * (n // 4 + 1))[:n], "big")


# -- servers ------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def nbcall_has_token() -> bool:
    out = subprocess.run(
        [sys.executable, "-m", "nbcall", "serve", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return "--token" in out


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False).stdout


def checkout(ref: str) -> Path:
    """nbcall/ as of git ``ref``, extracted under bench/results/.src-REF (for before/after runs)."""
    where = BENCH / "results" / f".src-{ref}"
    if not (where / "nbcall").is_dir():
        where.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "archive", ref, "nbcall"], cwd=ROOT, capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(where)], input=archive, check=True)
        # The widget's built JS is not in git, but importing nbcall needs it to exist: beside phone.py, wherever
        # that module lives at ``ref`` (nbcall/ before the reshape, nbcall/widget/ after).
        phone = next((where / "nbcall").rglob("phone.py"))
        static = phone.parent / "static"
        static.mkdir(exist_ok=True)
        for asset in (ROOT / "nbcall" / "widget" / "static").iterdir():
            (static / asset.name).write_bytes(asset.read_bytes())
    return where


def _die_with_parent() -> None:
    """In the child: get SIGKILL if the generator dies, so no server outlives a crashed run."""
    import ctypes
    import signal

    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class Server:
    """One server under test, started pinned to SERVER_CORE and killed at the end."""

    def __init__(self, name: str, port: int, *, token: bool = False, deflate: bool = False) -> None:
        self.name, self.port = name, port
        self.protocol = "peerjs" if name == "peerjs" else ("echo" if name == "echo" else "nbcall")
        cwd = ROOT
        if name.split("@")[0] in ("nbcall", "nbcall-asyncio", "nbcall-public"):
            # nbcall-asyncio: the same CLI kept off uvloop; nbcall@REF: the server as of git REF;
            # nbcall-public: serve(fast_path=False), websockets' public API instead of nbcall/server/fastpath.py.
            cli = ["--port", str(port)] + (["--token", TOKEN] if token else [])
            if deflate:
                cli += ["--compression", "deflate"]
            if "@" in name:
                cwd = checkout(name.split("@", 1)[1])
            hide_uvloop = "import sys; sys.modules['uvloop'] = None; " if "asyncio" in name else ""
            public = (
                # serve() lives in nbcall.server.server since the reshape, in nbcall.server before it (nbcall@REF).
                "import functools, importlib, importlib.util; "
                "s = importlib.import_module('nbcall.server.server' if importlib.util.find_spec('nbcall.server')"
                ".submodule_search_locations else 'nbcall.server'); "
                "s.serve = functools.partial(s.serve, fast_path=False); "
                if name.startswith("nbcall-public")
                else ""
            )
            cmd = [
                sys.executable,
                "-c",
                f"{hide_uvloop}{public}import sys; from nbcall.cli import main; sys.exit(main(['serve', *{cli!r}]))",
            ]
            self.path = "/ws" + (f"?token={TOKEN}" if token else "")
        elif name == "naive":
            cmd = [sys.executable, str(BENCH / "naive_relay.py"), "--port", str(port)]
            self.path = "/"
        elif name == "peerjs":
            cmd = ["node", str(BENCH / "peerjs" / "server.js"), str(port)]
            self.path = "/peerjs?key=peerjs&token=t&id={id}"
        elif name == "echo":
            cmd = [sys.executable, str(Path(__file__).resolve()), "--echo-server", str(port)]
            self.path = "/"
        else:
            raise ValueError(f"unknown server {name!r}")
        self.log = open(BENCH / "results" / f".{name}.log", "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            ["taskset", "-c", str(SERVER_CORE), *cmd],
            cwd=cwd,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - the generator starts no threads
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{name} server did not start; see {self.log.name}") from None
                time.sleep(0.05)

    def status_kb(self, field: str) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise KeyError(field)

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(10)
        self.log.close()


async def echo_server(port: int) -> None:
    """A websocket 'server' that completes the handshake and then echoes raw bytes back: no work per message."""

    class Echo(asyncio.Protocol):
        def connection_made(self, transport: Any) -> None:
            self.t, self.head = transport, b""

        def data_received(self, data: bytes) -> None:
            if self.head is None:
                self.t.write(data)
                return
            self.head += data
            if b"\r\n\r\n" in self.head:
                key = next(
                    line.split(b":", 1)[1].strip()
                    for line in self.head.split(b"\r\n")
                    if line.lower().startswith(b"sec-websocket-key:")
                )
                accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
                rest = self.head.split(b"\r\n\r\n", 1)[1]
                self.head = None
                self.t.write(
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n" + rest
                )

    loop = asyncio.get_running_loop()
    server = await loop.create_server(Echo, "127.0.0.1", port, backlog=4096)
    await server.serve_forever()


# -- the client ---------------------------------------------------------------

HANDSHAKE, OPEN, DISCARD, CLOSED = range(4)


class Run:
    """Shared state of one measurement: counters, latency samples, the measuring window."""

    def __init__(self) -> None:
        self.sending = False  # closed loop: a received message triggers the partner's next send
        self.window_start = self.window_end = 0  # perf_counter_ns bounds for counted messages
        self.latencies: list[int] = []
        self.worst = (0, 0)  # the worst latency and when it was received (perf_counter_ns)
        self.worst_by_second: dict[int, int] = {}  # second of the window -> worst latency in it
        self.in_window = 0
        self.other: Counter[str] = Counter()  # non-data frames after start, by type
        self.samples: list[str] = []  # first few of them, for the report
        self.control_frames = 0  # joined/left/... seen at any time (for quiescence)
        self.out_of_order = 0
        # Frames are queued per client and written once per event-loop turn: one write()
        # syscall carries every message a client sends in that turn.
        self.dirty: list[Client] = []
        self.loop = asyncio.get_running_loop()

    def flush(self) -> None:
        dirty, self.dirty = self.dirty, []
        for client in dirty:
            out = client.out
            client.out = []
            if client.state != CLOSED:
                client.transport.write(out[0] if len(out) == 1 else b"".join(out))


class Client(asyncio.Protocol):
    """One websocket client: handshake, register, then send/receive stamped candidate messages."""

    def __init__(self, run: Run, idx: int, server: Server, deflate: bool) -> None:
        self.run, self.idx, self.server = run, idx, server
        self.id = f"c{idx:06d}"
        self.state = HANDSHAKE
        self.buf = b""
        self.offer_deflate = deflate
        self.deflate = False
        self.compressor: Any = None
        self.decompressor: Any = None
        self.registered: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.partner: Client = self
        self.sent = self.received = self.expect_seq = 0
        self.out: list[bytes] = []
        self.closed_reason = ""
        mask = os.urandom(4)
        self.mask = mask

    # framing ------------------------------------------------------------------

    def set_partner(self, partner: Client) -> None:
        self.partner = partner
        if self.server.protocol == "peerjs":
            body = json.dumps(
                {
                    "type": "CANDIDATE",
                    "dst": partner.id,
                    "payload": {
                        "candidate": CANDIDATE,
                        "sdpMid": "0",
                        "sdpMLineIndex": 0,
                        "usernameFragment": "~" + "0" * STAMP_LEN + "~",
                    },
                },
                separators=(",", ":"),
            )
        else:
            candidate = json.dumps(
                {
                    "candidate": CANDIDATE,
                    "sdpMid": "0",
                    "sdpMLineIndex": 0,
                    "usernameFragment": "~" + "0" * STAMP_LEN + "~",
                },
                separators=(",", ":"),
            )
            body = json.dumps(
                {"type": "ice", "from": self.id, "to": partner.id, "candidate": candidate},
                separators=(",", ":"),
            )
        raw = body.encode()
        cut = raw.index(b"~") + 1
        self.prefix, self.suffix = raw[:cut], raw[cut + STAMP_LEN :]
        length = len(raw)
        self.length = length
        self.mask_int = mask_int(self.mask, length)
        self.header = b"\x81" + self._length_bytes(length) + self.mask

    @staticmethod
    def _length_bytes(length: int, rsv_mask: int = 0x80) -> bytes:
        if length < 126:
            return bytes([rsv_mask | length])
        if length < 65536:
            return bytes([rsv_mask | 126]) + length.to_bytes(2, "big")
        return bytes([rsv_mask | 127]) + length.to_bytes(8, "big")

    def write_frame(self, payload: bytes, opcode: int = 1) -> None:
        """Write one masked frame (any payload); the hot path uses send_data instead."""
        first = 0x80 | opcode
        if self.deflate and opcode == 1:
            payload = self._compress(payload)
            first |= 0x40
        if self.state == CLOSED:
            return
        mask = os.urandom(4)
        n = len(payload)
        masked = (int.from_bytes(payload, "big") ^ mask_int(mask, n)).to_bytes(n, "big") if n else b""
        self.transport.write(bytes([first]) + self._length_bytes(n) + mask + masked)

    def _compress(self, payload: bytes) -> bytes:
        if self.compressor is None:
            self.compressor = zlib.compressobj(wbits=-15)
        data = self.compressor.compress(payload) + self.compressor.flush(zlib.Z_SYNC_FLUSH)
        return data[:-4] if data.endswith(b"\x00\x00\xff\xff") else data

    def send_data(self) -> None:
        """Send the next stamped candidate message to the partner (the generator's hot path)."""
        payload = self.prefix + STAMP % (self.sent, time.perf_counter_ns()) + self.suffix
        self.sent += 1
        if self.deflate:
            self.write_frame(payload)
            return
        out = self.out
        out.append(
            self.header + (int.from_bytes(payload, "big") ^ self.mask_int).to_bytes(self.length, "big")
        )
        if len(out) == 1:
            run = self.run
            if not run.dirty:
                run.loop.call_soon(run.flush)
            run.dirty.append(self)

    # asyncio protocol ---------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        path = self.server.path.format(id=self.id)
        key = base64.b64encode(os.urandom(16))
        self.accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
        ext = (
            b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
            if self.offer_deflate
            else b""
        )
        transport.write(
            b"GET " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s\r\n"
            % (self.server.port, key, ext)
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self.state = CLOSED
        if not self.closed_reason:
            self.closed_reason = f"connection lost: {exc}" if exc else "closed by server"
        if not self.registered.done():
            self.registered.set_result(False)

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        if self.state == HANDSHAKE:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self.buf = buf
                return
            head = buf[:end].decode("latin-1")
            if not head.startswith("HTTP/1.1 101") or self.accept.decode() not in head:
                self.closed_reason = (
                    "handshake refused: "
                    + head.split("\r\n", 1)[0]
                    + " "
                    + buf[end + 4 :][:200].decode("latin-1")
                )
                self.transport.close()
                return
            self.deflate = "permessage-deflate" in head.lower()
            self.state = OPEN
            buf = buf[end + 4 :]
            if self.server.protocol == "echo":
                self.registered.set_result(True)
            elif self.server.protocol == "nbcall":
                self.write_frame(json.dumps({"type": "register", "from": self.id}).encode())
        pos, n = 0, len(buf)
        while n - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            length, head = b1 & 0x7F, 2
            if length == 126:
                if n - pos < 4:
                    break
                length, head = int.from_bytes(buf[pos + 2 : pos + 4], "big"), 4
            elif length == 127:
                if n - pos < 10:
                    break
                length, head = int.from_bytes(buf[pos + 2 : pos + 10], "big"), 10
            if b1 & 0x80:  # masked: only the echo server sends our own masked frames back
                mask = buf[pos + head : pos + head + 4]
                head += 4
            end = pos + head + length
            if end > n:
                break
            payload = buf[pos + head : end]
            pos = end
            if b1 & 0x80:
                payload = (int.from_bytes(payload, "big") ^ mask_int(mask, length)).to_bytes(length, "big")
            opcode = b0 & 0x0F
            if opcode == 1 and self.state == DISCARD:
                continue  # idle mode: registered, ignore broadcasts but still answer pings
            if b0 & 0x40:
                if self.decompressor is None:
                    self.decompressor = zlib.decompressobj(wbits=-15)
                payload = self.decompressor.decompress(payload + b"\x00\x00\xff\xff")
            if opcode == 1:
                mark = payload.find(b"~")
                if mark >= 0:
                    self.on_data(payload, mark)
                else:
                    self.on_control(payload)
            elif opcode == 9:
                self.write_frame(payload, opcode=10)
            elif opcode == 8:
                code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                self.closed_reason = f"close {code} {payload[2:].decode(errors='replace')}"
                self.state = CLOSED  # no more writes: uvloop raises on a closing transport
                self.transport.close()
                return
        self.buf = buf[pos:]

    def on_data(self, payload: bytes, mark: int) -> None:
        now = time.perf_counter_ns()
        run = self.run
        seq = int(payload[mark + 1 : mark + 11])
        if seq != self.expect_seq:
            run.out_of_order += 1
        self.expect_seq = seq + 1
        self.received += 1
        if run.window_start <= now < run.window_end:
            run.in_window += 1
            latency = now - int(payload[mark + 12 : mark + 28])
            run.latencies.append(latency)
            if latency > run.worst[0]:
                run.worst = (latency, now)
            second = (now - run.window_start) // 1_000_000_000
            if latency > run.worst_by_second.get(second, 0):
                run.worst_by_second[second] = latency
        if run.sending:
            self.partner.send_data()  # the partner's message arrived: it may send the next one

    def on_control(self, payload: bytes) -> None:
        run = self.run
        run.control_frames += 1
        if not self.registered.done():
            try:
                kind = json.loads(payload).get("type")
            except ValueError:
                kind = None
            if kind in ("registered", "OPEN"):
                self.registered.set_result(True)
                if self.run.discard_after_register:
                    self.state = DISCARD
                return
            if kind in ("error", "ERROR", "ID-TAKEN"):
                self.closed_reason = "refused: " + payload[:300].decode(errors="replace")
                self.registered.set_result(False)
                return
        if run.sending or run.window_end:
            try:
                kind = json.loads(payload).get("type", "?")
            except ValueError:
                kind = "not JSON"
            if kind not in ("joined", "left"):
                run.other[kind] += 1
                if len(run.samples) < 5:
                    run.samples.append(payload[:300].decode(errors="replace"))


Run.discard_after_register = False  # type: ignore[attr-defined]


# -- measurements -------------------------------------------------------------


def pct(sorted_ns: list[int], q: float) -> float | None:
    if not sorted_ns:
        return None
    return round(sorted_ns[min(len(sorted_ns) - 1, int(q * len(sorted_ns)))] / 1e6, 3)


async def open_clients(
    run: Run,
    server: Server,
    count: int,
    *,
    deflate: bool = False,
    concurrency: int = 200,
    timeout: float = 120,
) -> tuple[list[Client], dict[str, Any]]:
    """Connect and register ``count`` clients, ``concurrency`` at a time; return those that made it."""
    loop = asyncio.get_running_loop()
    clients: list[Client] = []
    failures: Counter[str] = Counter()
    sem = asyncio.Semaphore(concurrency)
    deadline = time.monotonic() + timeout

    async def one(i: int) -> None:
        async with sem:
            if time.monotonic() > deadline:
                failures["not attempted: time limit"] += 1
                return
            client = Client(run, i, server, deflate)
            # Spread source addresses over 127.0.0.2-127.0.0.41 so no one IP runs out of ephemeral ports.
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_IP, 24, 1)  # IP_BIND_ADDRESS_NO_PORT: pick the port at connect()
            sock.bind((f"127.0.0.{2 + i % 40}", 0))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as browsers do: no Nagle delay
            sock.setblocking(False)
            try:
                await asyncio.wait_for(loop.sock_connect(sock, ("127.0.0.1", server.port)), 30)
                await loop.create_connection(lambda: client, sock=sock)
                ok = await asyncio.wait_for(client.registered, max(1.0, deadline - time.monotonic()))
            except (OSError, asyncio.TimeoutError) as exc:
                failures[f"{type(exc).__name__}: {exc}"[:120]] += 1
                sock.close()
                return
            if ok:
                clients.append(client)
            else:
                failures[client.closed_reason[:160]] += 1

    await asyncio.gather(*(one(i) for i in range(count)))
    clients.sort(key=lambda c: c.idx)
    return clients, dict(failures)


async def quiesce(run: Run, limit: float) -> float:
    """Wait until the server stops sending control frames (joined broadcasts) for 0.5 s."""
    start = time.monotonic()
    last, still_since = -1, time.monotonic()
    while time.monotonic() - start < limit:
        await asyncio.sleep(0.1)
        if run.control_frames != last:
            last, still_since = run.control_frames, time.monotonic()
        elif time.monotonic() - still_since >= 0.5:
            break
    return round(time.monotonic() - start, 2)


def pair_up(clients: list[Client]) -> list[Client]:
    usable = clients[: len(clients) // 2 * 2] if clients[0].server.protocol != "echo" else clients
    for i, client in enumerate(usable):
        client.set_partner(client if client.server.protocol == "echo" else usable[i ^ 1])
    return usable


async def drain(clients: list[Client], limit: float) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if all(c.partner.received >= c.sent or c.state == CLOSED for c in clients):
            return
        await asyncio.sleep(0.05)


def close_all(clients: list[Client]) -> None:
    for c in clients:
        if c.state != CLOSED:
            c.transport.abort()


class Phase:
    """One measured phase of paired clients, from its creation (which starts the window and the CPU clocks) to
    :meth:`finish` (which drains the clients and gives the figures every phase reports)."""

    def __init__(self, run: Run, server: Server, duration: float, warmup: float) -> None:
        self.run, self.server, self.duration = run, server, duration
        gc.collect()
        gc.disable()  # no collector pauses in the generator while measuring (its hot path makes no cycles)
        self.cpu0, self.scpu0 = time.process_time(), server.cpu_seconds()
        self.start = time.perf_counter_ns()
        run.window_start = self.start + int(warmup * 1e9)
        run.window_end = self.start + int(duration * 1e9)
        self.latencies: list[int] = []  # sorted, once finished

    async def finish(self, clients: list[Client]) -> dict[str, Any]:
        cpu1, scpu1 = time.process_time(), self.server.cpu_seconds()
        relayed = sum(c.received for c in clients)  # during the phase, for CPU per message
        gc.enable()
        await drain(clients, 10)
        sent = sum(c.sent for c in clients)
        received = sum(c.received for c in clients)
        self.latencies = lat = sorted(self.run.latencies)
        return {
            "p50_ms": pct(lat, 0.50),
            "p99_ms": pct(lat, 0.99),
            "sent": sent,
            "received": received,
            "lost": sent - received,
            "other_frames": dict(self.run.other),
            "other_samples": self.run.samples,
            "server_cpu_s": round(scpu1 - self.scpu0, 2),
            "generator_cpu_s": round(cpu1 - self.cpu0, 2),
            "wall_s": self.duration,
            "relayed_in_phase": relayed,
        }


async def measure_throughput(
    server: Server, n: int, window: int, duration: float, warmup: float
) -> dict[str, Any]:
    run = Run()
    t0 = time.monotonic()
    clients, failures = await open_clients(run, server, n)
    connect_s = round(time.monotonic() - t0, 2)
    settle_s = await quiesce(run, 60)
    clients = pair_up(clients)
    phase = Phase(run, server, duration, warmup)
    run.sending = True
    for c in clients:
        for _ in range(window):
            c.send_data()
    await asyncio.sleep(duration)
    run.sending = False
    figures = await phase.finish(clients)
    measured = duration - warmup
    result = {
        "clients": len(clients),
        "clients_failed": failures,
        "window_per_client": window,
        "duration_s": duration,
        "connect_s": connect_s,
        "settle_s": settle_s,
        "msg_per_s": round(run.in_window / measured),
        "per_client_msg_per_s": round(run.in_window / measured / max(1, len(clients)), 1),
        **figures,
        "closed_by_server": dict(Counter(c.closed_reason[:80] for c in clients if c.state == CLOSED)),
        "out_of_order": run.out_of_order,
        "server_peak_rss_kb": server.status_kb("VmHWM"),
    }
    close_all(clients)
    return result


async def measure_fixed_rate(
    server: Server, n: int, rate: int, duration: float, warmup: float, deflate: bool = False
) -> dict[str, Any]:
    run = Run()
    clients, failures = await open_clients(run, server, n, deflate=deflate)
    await quiesce(run, 60)
    clients = pair_up(clients)
    phase = Phase(run, server, duration, warmup)
    start = phase.start
    total, k, count = 0, 0, len(clients)
    end = time.perf_counter_ns() + int(duration * 1e9)
    while (now := time.perf_counter_ns()) < end:
        due = int((now - start) * rate / 1e9) - total
        for _ in range(due):
            clients[k].send_data()
            k = k + 1 if k + 1 < count else 0
        total += due
        await asyncio.sleep(0.001)  # uvloop's timer resolution
    figures = await phase.finish(clients)
    result = {
        "clients": len(clients),
        "clients_failed": failures,
        "target_msg_per_s": rate,
        "deflate_negotiated": sum(c.deflate for c in clients),
        "achieved_msg_per_s": round(run.in_window / (duration - warmup)),
        **figures,
        "max_ms": pct(phase.latencies, 1.0),
        # When the worst message arrived, in seconds from the start of the phase (stalls show here).
        "max_at_s": round((run.worst[1] - start) / 1e9, 2),
        "max_ms_by_second": [round(v / 1e6, 1) for _, v in sorted(run.worst_by_second.items())],
    }
    close_all(clients)
    return result


async def measure_idle(server: Server, n: int, timeout: float, deflate: bool = False) -> dict[str, Any]:
    run = Run()
    run.discard_after_register = True  # type: ignore[attr-defined]
    await asyncio.sleep(0.5)
    rss0 = server.status_kb("VmRSS")
    t0 = time.monotonic()
    clients, failures = await open_clients(run, server, n, deflate=deflate, timeout=timeout)
    connect_s = round(time.monotonic() - t0, 2)
    # Let the server finish any broadcast work; its CPU going quiet is the signal.
    settle_start, last = time.monotonic(), server.cpu_seconds()
    while time.monotonic() - settle_start < min(timeout, 60):
        await asyncio.sleep(1)
        now = server.cpu_seconds()
        if now - last < 0.05:
            break
        last = now
    settle_s = round(time.monotonic() - settle_start, 2)
    held = sum(1 for c in clients if c.state != CLOSED)
    rss = server.status_kb("VmRSS")
    result = {
        "attempted": n,
        "registered": len(clients),
        "held": held,
        "failures": failures,
        "deflate_negotiated": sum(c.deflate for c in clients),
        "connect_s": connect_s,
        "settle_s": settle_s,
        "server_rss_0_kb": rss0,
        "server_rss_n_kb": rss,
        "kb_per_connection": round((rss - rss0) / held, 2) if held else None,
    }
    close_all(clients)
    return result


async def bench_server(name: str, args: argparse.Namespace, token: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}

    async def on_fresh_server(
        figure: str, measure: Callable[[Server], Awaitable[Any]], deflate: bool = False
    ) -> None:
        """Measure ``figure`` on a server of its own, started for it and killed after, whatever happens."""
        server = Server(name, free_port(), token=token and name.startswith("nbcall"), deflate=deflate)
        try:
            out[figure] = await measure(server)
        finally:
            server.stop()

    if "throughput" in args.modes:
        await on_fresh_server(
            "throughput",
            lambda s: measure_throughput(s, args.clients, args.window, args.duration, args.warmup),
        )
    if "fixed" in args.modes and name != "echo":
        await on_fresh_server(
            "fixed_rate", lambda s: measure_fixed_rate(s, args.clients, args.rate, args.duration, args.warmup)
        )
    if "idle" in args.modes and name != "echo":
        await on_fresh_server("idle", lambda s: measure_idle(s, args.idle, args.idle_timeout))
    if args.deflate and name.startswith(("nbcall", "naive")):
        # Offered by the client as browsers do; nbcall accepts it only with --compression deflate.
        await on_fresh_server(
            "idle_deflate",
            lambda s: measure_idle(s, args.idle, args.idle_timeout, deflate=True),
            deflate=True,
        )
        if "fixed" in args.modes:
            await on_fresh_server(
                "fixed_rate_deflate",
                lambda s: measure_fixed_rate(
                    s, args.clients, args.rate, args.duration, args.warmup, deflate=True
                ),
                deflate=True,
            )
    return out


# -- report -------------------------------------------------------------------

ROWS = [
    ("throughput", "clients", "clients (saturation)"),
    ("throughput", "msg_per_s", "relayed msg/s"),
    ("throughput", "p50_ms", "  latency p50 ms"),
    ("throughput", "p99_ms", "  latency p99 ms"),
    ("throughput", "lost", "  lost"),
    ("throughput", "server_peak_rss_kb", "  server peak RSS kB"),
    ("throughput", "server_cpu_pct", "  server CPU %"),
    ("throughput", "generator_cpu_pct", "  generator CPU %"),
    ("throughput", "server_us_per_msg", "  server CPU us/msg"),
    ("throughput", "generator_us_per_msg", "  generator CPU us/msg"),
    ("fixed_rate", "achieved_msg_per_s", "fixed rate msg/s"),
    ("fixed_rate", "p50_ms", "  latency p50 ms"),
    ("fixed_rate", "p99_ms", "  latency p99 ms"),
    ("fixed_rate", "lost", "  lost"),
    ("fixed_rate", "generator_cpu_pct", "  generator CPU %"),
    ("idle", "held", "idle connections held"),
    ("idle", "kb_per_connection", "  kB per connection"),
    ("idle", "connect_s", "  time to open+register s"),
    ("idle_deflate", "held", "idle, deflate: held"),
    ("idle_deflate", "kb_per_connection", "  kB per connection"),
    ("idle_deflate", "deflate_negotiated", "  deflate negotiated"),
    ("fixed_rate_deflate", "p50_ms", "fixed rate, deflate: p50 ms"),
    ("fixed_rate_deflate", "p99_ms", "  latency p99 ms"),
    ("fixed_rate_deflate", "lost", "  lost"),
]


def derive(result: dict[str, Any]) -> None:
    for mode in ("throughput", "fixed_rate", "fixed_rate_deflate"):
        m = result.get(mode)
        if m:
            m["server_cpu_pct"] = round(100 * m["server_cpu_s"] / m["wall_s"])
            m["generator_cpu_pct"] = round(100 * m["generator_cpu_s"] / m["wall_s"])
            # CPU per relayed message: unlike msg/s, it holds when other work shares the core.
            if m.get("relayed_in_phase"):
                m["server_us_per_msg"] = round(1e6 * m["server_cpu_s"] / m["relayed_in_phase"], 2)
                m["generator_us_per_msg"] = round(1e6 * m["generator_cpu_s"] / m["relayed_in_phase"], 2)


def median_of(runs: list[dict[str, Any]], mode: str, key: str) -> Any:
    values = [r[mode][key] for r in runs if mode in r and r[mode].get(key) is not None]
    if not values:
        return None
    if not all(isinstance(v, (int, float)) for v in values):
        return values[0]
    return statistics.median(values)


def print_table(results: dict[str, list[dict[str, Any]]]) -> None:
    names = list(results)
    width = 14
    print("\n" + "figure (median of runs)".ljust(30) + "".join(n.rjust(width) for n in names))
    for mode, key, label in ROWS:
        cells = [median_of(results[n], mode, key) for n in names]
        if all(c is None for c in cells):
            continue
        print(
            label.ljust(30)
            + "".join(
                (
                    "-"
                    if c is None
                    else f"{c:,}"
                    if isinstance(c, int)
                    else f"{c:,.2f}"
                    if isinstance(c, float)
                    else str(c)
                ).rjust(width)
                for c in cells
            )
        )


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    token = nbcall_has_token()
    names = args.servers.split(",")
    results: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    for run_no in range(args.runs):
        for name in names:
            print(f"run {run_no + 1}/{args.runs}: {name} ...", flush=True)
            try:
                r = await bench_server(name, args, token)
            except RuntimeError as exc:  # a server that fails to start is reported, the others still run
                print(f"  {name}: {exc}", flush=True)
                r = {"error": str(exc)}
            derive(r)
            results[name].append(r)
            print(
                json.dumps(
                    {
                        k: {kk: vv for kk, vv in v.items() if kk != "other_samples"}
                        if isinstance(v, dict)
                        else v
                        for k, v in r.items()
                    }
                ),
                flush=True,
            )
    print_table(results)
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "cpu": next(
                (
                    line.split(":", 1)[1].strip()
                    for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")
                ),
                "?",
            ),
            "kernel": platform.release(),
            "python": platform.python_version(),
            "server_core": SERVER_CORE,
            "generator_core": GENERATOR_CORE,
            "event_loop": type(asyncio.get_running_loop()).__module__,
        },
        "config": {**vars(args), "nbcall_token": token},
        "nbcall_commit": git("rev-parse", "HEAD").strip(),
        "nbcall_uncommitted_changes": git("status", "--short", "nbcall").split("\n")[:-1],
        "machine_load_at_end": Path("/proc/loadavg").read_text().strip(),
        "medians": {n: {f"{m}.{k}": median_of(results[n], m, k) for m, k, _ in ROWS} for n in names},
        "runs": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 s phases, 1 run")
    parser.add_argument("--runs", type=int, default=None, help="repetitions (default 3, 1 with --quick)")
    parser.add_argument(
        "--servers", default="echo,nbcall,naive,peerjs", help="comma-separated; echo = generator ceiling"
    )
    parser.add_argument("--modes", default="throughput,fixed,idle")
    parser.add_argument(
        "--clients", type=int, default=4000, help="clients in throughput and fixed-rate modes"
    )
    parser.add_argument("--window", type=int, default=2, help="messages in flight per client (saturation)")
    parser.add_argument("--rate", type=int, default=10_000, help="total msg/s in fixed-rate mode")
    parser.add_argument("--idle", type=int, default=10_000, help="connections in idle mode")
    parser.add_argument("--idle-timeout", type=float, default=120, help="time limit to open idle connections")
    parser.add_argument(
        "--duration", type=float, default=None, help="seconds per phase (default 10, 3 with --quick)"
    )
    parser.add_argument(
        "--deflate", action="store_true", help="also measure idle memory with permessage-deflate"
    )
    parser.add_argument("--out", default=None, help="JSON path (default bench/results/load-DATE.json)")
    parser.add_argument("--echo-server", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    try:
        import uvloop
    except ImportError:
        uvloop = None
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # inherited by the servers we start

    if args.echo_server is not None:
        (uvloop.run if uvloop else asyncio.run)(echo_server(args.echo_server))
        return

    if hard < args.idle + 1000:
        sys.exit(f"RLIMIT_NOFILE hard limit {hard} is too low for {args.idle} idle connections")
    args.duration = args.duration or (3.0 if args.quick else 10.0)
    args.warmup = min(1.0, args.duration / 4)
    args.runs = args.runs or (1 if args.quick else 3)
    args.modes = args.modes.split(",")
    os.sched_setaffinity(0, {GENERATOR_CORE})
    (BENCH / "results").mkdir(exist_ok=True)
    report = (uvloop.run if uvloop else asyncio.run)(main_async(args))
    out = Path(args.out) if args.out else BENCH / "results" / f"load-{datetime.date.today().isoformat()}.json"
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
