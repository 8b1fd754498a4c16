"""The aiortc engine of a Python peer: it carries out the call machine's engine commands with real WebRTC.

The commands are those a phone's browser half takes (docs/widget-protocol.md): ``start_call``, ``remote``,
``accept`` and ``close``, each naming a ``peer``. The engine holds one :class:`~nbcall.peer.link.Link` (an
RTCPeerConnection, its data channel and its media, made by :mod:`nbcall.peer.tracks`) per peer, and reports
back to its :class:`EngineHost` the signals to relay, connection and channel states, whole received messages
and failures. Everything runs on one asyncio loop.

aiortc facts that shape it: it cannot roll back a local offer, so a Python peer is never the polite side of
perfect negotiation (docs/rooms.md): its offers and answers say ``"polite": false``, and an offer that meets its
own pending offer is ignored (the other side rolls back and answers ours); an offer on a live link renegotiates
that link. It sends no trickled candidates (its offer and answer carry them, gathered first);
without ``iceServers`` it would use a public STUN server, so the configured list is always passed; and aioice
leaves loopback addresses out of its host candidates, which :mod:`nbcall.peer.aiortc_patches` fixes per
connection, with nbcall's other reaches into aiortc's internals.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Callable
from typing import Any

from ..wire.payload import Kind
from .link import EngineHost, Link, SendLimits
from .sfu import SfuSession
from .tracks import ArrayAudioTrack, ArrayVideoTrack, MediaOptions

__all__ = [
    "ArrayAudioTrack",
    "ArrayVideoTrack",
    "Engine",
    "EngineHost",
    "Link",
    "MediaOptions",
    "SendLimits",
]

logger = logging.getLogger("nbcall.peer.rtc")


class Engine:
    """The peer connections of one Python peer, one :class:`Link` per peer; runs on one asyncio loop."""

    def __init__(
        self, host: EngineHost, media: MediaOptions | None = None, limits: SendLimits | None = None
    ) -> None:
        self.host = host
        self.media = media or MediaOptions()
        self.limits = limits or SendLimits()
        self.links: dict[str, Link] = {}
        #: In an SFU room: the connections to the SFU (the room's members are feeds on them, not links).
        self.sfu: SfuSession | None = None
        self.retiring: set[asyncio.Future[None]] = set()
        #: Seconds between ending a call and closing its connection (see :meth:`_retire`).
        self.close_grace = 0.3
        # Media sources and frame callbacks run here, never on the loop.
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="nbcall-media")

    def command(self, message: dict[str, Any]) -> None:
        """Carry out one engine command of the call machine (on the loop); a failure fails that peer's call,
        saying why, rather than leaving it waiting."""
        try:
            self._command(message)
        except Exception as exc:
            logger.exception("the engine could not carry out %r", message.get("type"))
            self.host.engine_failure(
                str(message.get("peer")), f"{message.get('type')} failed: {type(exc).__name__}: {exc}"
            )

    def _command(self, message: dict[str, Any]) -> None:
        kind, peer = message["type"], message["peer"]
        if kind == "start_call":
            link = self._new_link(peer, message.get("ice_servers") or [])
            self._step(link, link.offer())
        elif kind == "remote":
            signal = message["signal"]
            what = signal.get("type")
            if what == "call":
                # An offer on a live link renegotiates it (rooms); otherwise it starts a new connection.
                live = self.links.get(peer)
                if live is None or live.pc.connectionState in ("failed", "closed"):
                    live = self._new_link(peer, message.get("ice_servers") or [])
                self._step(live, live.take_offer(signal))
            elif peer in self.links:
                link = self.links[peer]
                step = link.take_answer(signal) if what == "answer" else link.take_candidate(signal)
                self._step(link, step)
        elif kind == "accept":
            if peer in self.links:
                link = self.links[peer]
                self._step(link, link.answer())
        elif kind == "close":
            closing = self.links.pop(peer, None)
            if closing is not None:
                self._retire(closing, grace=self.close_grace)
            if self.sfu is not None:
                self.sfu.forget(peer)
        elif kind in ("sfu_publish", "sfu_remote", "sfu_close"):
            self._sfu_command(kind, message)
        else:
            logger.warning("the engine ignored an unknown command %r", kind)

    def _sfu_command(self, kind: str, message: dict[str, Any]) -> None:
        if kind == "sfu_publish":
            if self.sfu is not None:
                self._close_sfu()
            host: Any = self.host  # a Peer: also an SfuHost
            self.sfu = SfuSession(
                str(host.user_id), host, self.media, message.get("ice_servers") or [], self.pool,
                self.limits.high_water,
            )  # fmt: skip
            self.sfu.step(self.sfu.publish)
        elif kind == "sfu_remote" and self.sfu is not None:
            sfu, role, signal = self.sfu, message["role"], message["signal"]
            feeds, streams = message.get("feeds"), message.get("streams")
            sfu.step(lambda: sfu.take(role, signal, feeds, streams))
        elif kind == "sfu_close":
            self._close_sfu()

    def _close_sfu(self) -> None:
        sfu, self.sfu = self.sfu, None
        if sfu is not None:
            task = asyncio.ensure_future(sfu.close(grace=self.close_grace))
            self.retiring.add(task)
            task.add_done_callback(self.retiring.discard)

    def _new_link(self, peer: str, ice_servers: list[dict[str, Any]]) -> Link:
        old = self.links.pop(peer, None)
        if old is not None:
            self._retire(old, grace=0)
        link = Link(peer, ice_servers, self.host, self.media, self.limits, self.pool)
        self.links[peer] = link
        return link

    def _retire(self, link: Link, grace: float) -> None:
        """Stop reporting on ``link`` now; close its connection after ``grace`` seconds, so that the hangup
        the machine just sent through the server reaches the peer before its data channel closes."""
        link.closed = True

        async def close() -> None:
            await asyncio.sleep(grace)
            await link.close(force=True)

        task = asyncio.ensure_future(close())
        self.retiring.add(task)
        task.add_done_callback(self.retiring.discard)

    def _step(self, link: Link, step: Any) -> None:
        """Run a signaling step after the link's earlier ones; a failure is reported unless it was closed."""

        async def run() -> None:
            async with link.steps:
                try:
                    await step
                except Exception as exc:
                    if not link.closed:
                        logger.debug("a WebRTC step with %s failed", link.peer, exc_info=True)
                        self.host.engine_failure(link.peer, f"{type(exc).__name__}: {exc}")

        asyncio.ensure_future(run())

    async def send(
        self, kind: Kind, payload: bytes, to: str | None = None, progress: Callable[[int], None] | None = None
    ) -> None:
        """Send a message to ``to``, or to every link whose data channel is open now (in an SFU room: to every
        member, through the SFU)."""
        if self.sfu is not None and to is None:
            await self.sfu.send(kind, payload, progress)
            return
        if to is not None:
            targets = [self.links[to]] if to in self.links else []
        else:
            targets = [link for link in self.links.values() if link.open]
        if not targets:
            raise ConnectionError(f"no open data channel to {to or 'any peer'}")
        await asyncio.gather(*(link.send(kind, payload, progress) for link in targets))

    async def flush(self, timeout: float) -> bool:
        """Wait until every link's sends were acknowledged (or ``timeout`` passed)."""
        flushes = [link.flush(timeout) for link in list(self.links.values())]
        if self.sfu is not None:
            flushes.append(self.sfu.flush(timeout))
        results = await asyncio.gather(*flushes)
        return all(results)

    def open_peers(self) -> list[str]:
        """The peers whose data channel is open now."""
        return [peer for peer, link in self.links.items() if link.open]

    async def upload(self) -> dict[str, int]:
        """What this peer sent so far on every connection it holds: media (RTP ``bytesSent``) and data bytes."""
        pcs = [(link.pc, link.bytes_out) for link in self.links.values() if not link.closed]
        if self.sfu is not None:
            pcs.append((self.sfu.publisher, self.sfu.bytes_out))
        media = 0
        for pc, _ in pcs:
            for sender in pc.getSenders():
                if sender.track is not None:
                    stats = await sender.getStats()
                    media += sum(s.bytesSent for s in stats.values() if s.type == "outbound-rtp")
        return {"connections": len(pcs), "media_bytes": media, "data_bytes": sum(sent for _, sent in pcs)}

    def stats(self) -> dict[str, dict[str, Any]]:
        summary = {peer: link.stats() for peer, link in self.links.items()}
        if self.sfu is not None:
            # Per member only what came from it; our own links to the SFU once, under our own ID.
            summary.update(self.sfu.member_stats())
            summary[self.sfu.user_id] = self.sfu.stats()
        return summary

    async def close(self) -> None:
        self._close_sfu()
        links, self.links = list(self.links.values()), {}
        await asyncio.gather(*(link.close() for link in links), *self.retiring, return_exceptions=True)
        self.pool.shutdown(wait=False, cancel_futures=True)
