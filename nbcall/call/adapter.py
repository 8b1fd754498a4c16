"""What every adapter of the call machine does alike (``Phone`` in the browser, ``Peer`` on aiortc).

The user's actions and the signaling server's messages go into the :class:`~nbcall.call.machine.CallMachine` under the
adapter's lock, and the adapter carries out what the machine decided (its own ``_carry_out``); the machine's
clock runs on the kernel's background loop.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from ..exceptions import CallError
from . import kernel
from .machine import CallMachine
from .progress import ProgressReporter

__all__ = ["CallAdapter"]

logger = logging.getLogger("nbcall.call.adapter")


class CallAdapter:
    """Mixin of ``Phone`` and ``Peer``: their calls, rooms and signaling, fed to one machine each.

    The class sets ``_machine``, ``_lock``, ``_closing``, ``_timer``, ``_armed`` and ``_progress`` (which
    publishes to its ``progress`` trait), and defines
    ``_carry_out()`` and ``_log_entry(direction, type, detail, size)``.
    """

    _machine: CallMachine
    _lock: threading.RLock
    _closing: bool
    _timer: asyncio.TimerHandle | None
    _armed: float | None
    _progress: ProgressReporter
    user_id: str
    server_url: str
    set_trait: Callable[[str, Any], None]  # from traitlets.HasTraits, which every adapter also is

    def _carry_out(self) -> None:
        raise NotImplementedError

    def _log_entry(self, direction: str, kind: str, detail: Any, size: int = 0) -> None:
        raise NotImplementedError

    @property
    def auto_answer(self) -> bool:
        """Whether incoming calls and invitations are answered at once."""
        return self._machine.auto_answer

    @auto_answer.setter
    def auto_answer(self, value: bool) -> None:
        self._machine.auto_answer = bool(value)

    @property
    def ice_servers(self) -> list[dict[str, Any]]:
        """The STUN/TURN servers this phone's peer connections may use (none by default)."""
        return self._machine.ice_servers

    # ----------------------------------------------------------------------------------------- public API

    def on_progress(self, callback: Callable[[dict[str, Any]], Any]) -> Callable[[dict[str, Any]], Any]:
        """Call ``callback(progress)`` as a large send or reception advances (see ``progress``)."""
        self._progress.callbacks.append(callback)
        return callback

    def _report_progress(self, progress: dict[str, Any], force: bool = False) -> None:
        self._progress.report(progress, force=force)

    def call(self, peer: str) -> None:
        """Call ``peer``: its phone rings, and the call connects once it answers."""
        self._check_can_dial("call")
        with self._lock:
            self._machine.call(peer, time.monotonic())
            self._carry_out()

    def invite(self, *peer_ids: str) -> None:
        """Invite peers into this phone's room: an idle phone makes a room, a 1:1 call becomes one.

        Each invited phone rings with ``invitation`` set; once one accepts, the room is up and every member
        connects to every other (docs/rooms.md). Any member may invite. A refusal (the peer declined, is
        offline, the room is full) comes back in ``error``.
        """
        self._check_can_dial("invite")
        with self._lock:
            self._machine.invite(peer_ids, time.monotonic())
            self._carry_out()

    def answer(self) -> None:
        """Answer the incoming call, or accept the invitation into a room (the phone must be ringing)."""
        with self._lock:
            self._machine.answer(time.monotonic())
            self._carry_out()

    def decline(self, reason: str = "declined") -> None:
        """Refuse the incoming call or invitation; the caller (the inviter) learns ``reason``."""
        with self._lock:
            self._machine.decline(reason)
            self._carry_out()

    def hangup(self) -> None:
        """End the current call on both sides, or leave the room (does nothing when there is neither)."""
        with self._lock:
            self._machine.hangup()
            self._carry_out()

    def leave(self) -> None:
        """Leave the room: the others see this phone go, and go on among themselves (an invitation that
        rings is declined)."""
        with self._lock:
            self._machine.leave()
            self._carry_out()

    def _members_verdict(self, peer_ids: tuple[str, ...]) -> list[str] | Exception | None:
        """What ``wait_for_members`` has come to: the members waited for, an error, or None (not yet)."""
        machine = self._machine
        if not (machine.room or machine._room_asked) and machine.state != "ringing":
            reason = f": {machine.error}" if machine.error else ""
            return CallError(f"{machine.user_id} is in no room (state {machine.state!r}){reason}")
        if not machine.room:
            return None  # still being made, or joining
        gone = [m for m in peer_ids if m not in machine.members]
        if gone:
            return CallError(f"{', '.join(gone)} not in {machine.user_id}'s room; members: {machine.members}")
        wanted = list(peer_ids) or [m for m in machine.members if m != machine.user_id]
        if wanted and all(machine.connections.get(m) == "connected" for m in wanted):
            return wanted
        return None

    def _check_can_dial(self, action: str) -> None:
        """Raise when this phone cannot ``action`` a peer by its ID (a phone without a server, say)."""

    # --------------------------------------------------------------------------------------- the clock

    def _arm_timer(self, deadline: float | None) -> None:
        """Run the machine's tick at ``deadline`` (on the background loop, which owns the timer)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if deadline is not None:
            delay = max(0.0, deadline - time.monotonic())
            self._timer = asyncio.get_running_loop().call_later(delay, self._tick)

    def _schedule_tick(self) -> None:
        """After the machine ran: move the timer if its deadline changed (with the lock held)."""
        deadline = self._machine.deadline()
        if deadline != self._armed:
            self._armed = deadline
            kernel.call_soon(self._arm_timer, deadline)

    def _tick(self) -> None:
        with self._lock:
            self._armed = None
            self._machine.tick(time.monotonic())
            self._carry_out()

    # ----------------------------------------------------------------------- messages from the server

    def _on_signal(self, message: dict[str, Any], size: int) -> None:
        """A message from the signaling server (runs on the background loop's thread)."""
        with self._lock:
            self._log_entry("in", str(message.get("type")), message, size)
            if message.get("type") == "error":
                logger.warning("%s: signaling server: %s", self.user_id, message.get("message"))
            self._machine.receive(message, time.monotonic())
            self._carry_out()

    def _on_signaling_state(self, online: bool, detail: Any) -> None:
        """The signaling connection dropped (detail: why) or came back (detail: the ``registered`` reply)."""
        with self._lock:
            if online:
                self._log_entry("in", "registered", detail)
                self._machine.registered(detail)
                client = getattr(self, "_client", None)
                if client is not None and client.url != self.server_url:
                    self.set_trait("server_url", client.url)  # failed over: the node it is registered at now
            elif self._closing or kernel.shutting_down():
                self._machine.signaling_lost(None)  # we closed it: not a lost connection
            else:
                logger.warning("%s is offline: %s", self.user_id, detail)
                self._machine.signaling_lost(str(detail))
            self._carry_out()
