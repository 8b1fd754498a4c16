"""The comm hop alone, kernel <-> browser with no WebRTC: one of the two ceilings of a phone path in
bench/throughput.py (run in the phones' notebook)."""

from __future__ import annotations

from typing import Any

from sampling import CpuUse

MIB = 2**20

# The comm hop alone, no WebRTC: an anywidget that takes parts from the kernel (answering each as the phone's
# browser half does, so that the kernel sends in the phone's window), sends parts up to the kernel (as a phone
# passes a received message on), or echoes each part back as it comes (kernel -> browser -> kernel).
# The browser half says "ready" once it listens: a custom message sent before is dropped by the front end (its
# module still loading), which on a loaded machine left the first measurement waiting for answers forever. Every
# wait is bounded: a hop that stalls raises with how far it got.
HOP_SETUP = """\
import anywidget, asyncio, time
from nbcall.widget.outgoing import Outgoing
class Hop(anywidget.AnyWidget):
    _esm = '''
    export default { initialize({ model }) {
      let got = 0;
      model.on("msg:custom", (msg, buffers) => {
        if (msg.type === "part") {
          got += buffers[0].byteLength;
          if (msg.echo) {
            const copy = new Uint8Array(buffers[0].byteLength);
            copy.set(new Uint8Array(buffers[0].buffer, buffers[0].byteOffset, buffers[0].byteLength));
            model.send({ type: "up", last: got >= msg.size }, undefined, [copy.buffer]);
          }
          model.send({ type: "sent", id: msg.id, done: got });
          if (got >= msg.size) { if (!msg.echo) model.send({ type: "done", t: Date.now() }); got = 0; }
        } else if (msg.type === "upload") {
          model.send({ type: "start", t: Date.now() });
          for (let sent = 0; sent < msg.size; sent += msg.part) {
            const part = new Uint8Array(Math.min(msg.part, msg.size - sent));
            model.send({ type: "up", last: sent + part.length >= msg.size }, undefined, [part.buffer]);
          }
        }
      });
      model.send({ type: "ready" });
    } };'''
    def __init__(self):
        super().__init__()
        self.on_msg(self._got)
        self.ready, self.done, self.acked, self.up_bytes, self.last = False, None, 0, 0, time.time()
    def _got(self, _, msg, buffers):
        self.last = time.time()
        if msg["type"] == "ready":
            self.ready = True
        elif msg["type"] == "sent":
            self.acked = msg["done"]
            self.out.taken(msg["id"], msg["done"])
            self._pump()
        elif msg["type"] == "start":
            self.t_start = msg["t"] / 1000
        elif msg["type"] == "up":
            self.up_bytes += sum(len(b) for b in buffers)
        if msg["type"] == "done" or (msg["type"] == "up" and msg["last"]):
            self.done.set_result(msg["t"] / 1000 if "t" in msg else time.time())
    def _pump(self):
        for header, part in self.out.ready():
            self.send({**header, "type": "part", "echo": self.echo, "size": self.size}, [part])
    async def _wait(self, what, size, stall=60, limit=150):
        start = time.time()
        while not self.done.done():
            await asyncio.sleep(0.05)
            if time.time() - self.last > stall or time.time() - start > limit:
                raise TimeoutError(
                    f"the comm hop ({what}) stalled: {self.acked} bytes acknowledged and {self.up_bytes} "
                    f"received of {size}, the browser's last message {time.time() - self.last:.0f} s ago")
        return self.done.result()
    async def wait_ready(self, timeout=20):
        for _ in range(int(timeout / 0.05)):
            if self.ready:
                return
            await asyncio.sleep(0.05)
        raise TimeoutError(f"the hop widget's browser half did not say ready in {timeout} s")
    async def down(self, payload, echo=False):
        await self.wait_ready()
        self.done, self.echo, self.size = asyncio.get_running_loop().create_future(), echo, len(payload)
        self.acked = self.up_bytes = 0
        self.out = Outgoing()
        self.out.add({"id": 1}, payload)
        t0 = self.last = time.time()
        self._pump()
        return await self._wait("kernel -> browser -> kernel" if echo else "kernel -> browser", len(payload)) - t0
    async def up(self, size, part):
        await self.wait_ready()
        self.done = asyncio.get_running_loop().create_future()
        self.acked = self.up_bytes = 0
        self.last = time.time()
        self.send({"type": "upload", "size": size, "part": part})
        t1 = await self._wait("browser -> kernel", size)
        return t1 - self.t_start
hop = Hop()
display(hop)
"""


def comm_ceilings(nb: Any, size: int) -> dict[str, dict[str, Any]]:
    """The comm hop alone (no WebRTC), in the phones' notebook: kernel -> browser in the phone's parts and window,
    browser -> kernel in the phone's parts, and kernel -> browser -> kernel (each part echoed as it comes); each
    with the CPU seconds of every process (:class:`sampling.CpuUse`)."""
    nb.run(HOP_SETUP)
    results = {}
    for name, code in (
        (
            "ceiling: comm kernel -> browser",
            f"print('@@', await hop.down(os.urandom({size})))",
        ),
        (
            "ceiling: comm browser -> kernel",
            f"print('@@', await hop.up({size}, {4 * MIB}))",
        ),
        (
            "ceiling: comm kernel -> browser -> kernel",
            f"print('@@', await hop.down(os.urandom({size}), True))",
        ),
    ):
        use = CpuUse()
        seconds = float(nb.run(code).split("@@")[1].split()[0])
        results[name] = {"seconds": seconds, "hops": {"widget": seconds}, "cpu": use.stop()}
    return results
