"""What every adapter of the call machine does alike (``Phone`` in the browser, ``Peer`` on aiortc).

The user's actions and the signaling server's messages go into the :class:`~nbcall.call.machine.CallMachine` under the
adapter's lock, and the adapter carries out what the machine decided (its own ``_carry_out``); the machine's
clock runs on the kernel's background loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from ..exceptions import CallError, SignalingError
from . import kernel, owners
from .client import SignalingClient
from .lock import AdapterLock
from .machine import STATES, CallMachine
from .progress import ProgressReporter
from .transfer import FileReceiver, list_files, send_files

__all__ = ["CallAdapter"]

logger = logging.getLogger("nbcall.call.adapter")
T = TypeVar("T")
#: What a wait has come to: its result, an exception to raise, or None (not yet).
Verdict = Callable[[bool], T | Exception | None]


class CallAdapter:
    """Mixin of ``Phone`` and ``Peer``: their calls, rooms and signaling, fed to one machine each.

    The class sets ``_machine``, ``_lock`` (an :class:`~.lock.AdapterLock`), ``_closing``, ``_timer``, ``_armed``, ``_progress`` (which
    publishes to its ``progress`` trait) and ``_files`` (its file receiver), and defines ``_carry_out()``,
    ``_log_entry(direction, type, detail, size)`` and ``send_file_part`` (see :class:`~.transfer.FileLink`).
    """

    _machine: CallMachine
    _lock: AdapterLock
    #: The checks of the waits under way, by the trait they follow (see :meth:`_watch`).
    _checks: dict[str, list[Callable[[bool], None]]]
    _closing: bool
    _timer: asyncio.TimerHandle | None
    _armed: float | None
    _progress: ProgressReporter
    _files: FileReceiver
    _client: SignalingClient | None
    user_id: str
    server_url: str
    # From traitlets.HasTraits, which every adapter also is.
    set_trait: Callable[[str, Any], None]
    observe: Callable[..., None]
    unobserve: Callable[..., None]
    has_trait: Callable[[str], bool]
    state: str
    error: str
    connections: dict[str, str]
    #: Hang up and leave the server (each adapter's own; not defined here, which would hide Widget.close).
    close: Callable[[], None]

    def _carry_out(self) -> None:
        raise NotImplementedError

    def _notify_observers(self, event: Any) -> None:
        """Settle the waits on this change now, and notify the observers once the lock is released (see
        :mod:`.lock`): an observer may then wait for the loop or call this phone from another thread."""
        for check in list(getattr(self, "_checks", {}).get(event["name"], ())):
            check(False)
        notify = super()._notify_observers  # type: ignore[misc]
        lock: AdapterLock | None = getattr(self, "_lock", None)
        if lock is not None and lock.held():
            lock.defer(notify, event)
        else:
            notify(event)

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
        """Call ``callback(progress)`` as a large send or reception advances (see ``progress``).

        Parameters
        ----------
        callback
            Called with each report, ``{"direction", "peer", "name", "done", "total", "rate", "eta"}``, at
            most ten a second and always the last; returned as it is, so that this works as a decorator.
        """
        self._progress.callbacks.append(callback)
        return callback

    def _report_progress(self, progress: dict[str, Any], force: bool = False) -> None:
        self._progress.report(progress, force=force)

    # ------------------------------------------------------------------------------------------- files

    @property
    def file_receiver(self) -> FileReceiver:
        """What receives files in this phone's calls (and the verdicts on the files it sends)."""
        return self._files

    def file_targets(self, to: str | None) -> list[str]:
        """Who a file sent now goes to: ``to``, or every peer connected now (in a room, every member)."""
        with self._lock:
            machine = self._machine
            if to is not None:
                return [to]
            if machine.room:
                return [m for m, state in machine.connections.items() if state == "connected"]
            return [machine.peer] if machine.state == "connected" else []

    async def send_file_part(
        self, data: Any, targets: Sequence[str], progress: dict[str, Any] | None
    ) -> None:
        """Send one message of a file to ``targets`` (see :class:`~.transfer.FileLink`)."""
        raise NotImplementedError

    def _send_files(
        self, path: str | Path, name: str | None, to: str | None, timeout: float | None, resume: bool = True
    ) -> concurrent.futures.Future[dict[str, Any]]:
        """Send the file or directory at ``path`` on the background loop (see :func:`~.transfer.send_files`)."""
        files = list_files([Path(path)], names=[name] if name else None)
        with self._lock:
            self._machine.check_send_file(to)
            self._machine.check_send(to)
        return kernel.submit(send_files(self, files, to=to, timeout=timeout, resume=resume))

    def _sent_through_server(self, kind: str, payload: bytes, to: str | None) -> bool:
        """In an SFU room a message to one member goes through the signaling server: send it so (True) or
        say it is not for it (False). Raises when it is too large for the server."""
        with self._lock:
            if to is None or self._machine.room_mode != "sfu":
                return False
            self._machine.check_send(to)
            self._machine.send_direct(to, kind, payload)
            self._carry_out()
        return True

    def call(self, peer: str) -> None:
        """Call ``peer``: its phone rings, and the call connects once it answers.

        Parameters
        ----------
        peer
            The ID of the phone (or peer) to call.

        Raises
        ------
        nbcall.CallError
            This phone is offline, in a call or a room already, has no signaling server, or ``peer`` is
            itself.
        """
        self._check_can_dial("call")
        with self._lock:
            self._machine.call(peer, time.monotonic())
            self._carry_out()

    def invite(self, *peer_ids: str, sfu: bool = False) -> None:
        """Invite peers into this phone's room: an idle phone makes a room, a 1:1 call becomes one.

        Each invited phone rings with ``invitation`` set; once one accepts, the room is up and every member
        connects to every other (docs/rooms.md). Any member may invite. A refusal (the peer declined, is
        offline, the room is full) comes back in ``error``. With ``sfu=True`` a new room is made on the
        server's SFU (``room_mode`` "sfu"): each member sends once to the SFU, which forwards to the others, so a
        room may hold a class; its invitations ring with ``invitation["sfu"]``.

        Parameters
        ----------
        *peer_ids
            The IDs of the phones to invite.

        Raises
        ------
        nbcall.CallError
            This phone is offline, busy with a call being set up, or one of ``peer_ids`` is itself or a
            member already.
        """
        self._check_can_dial("invite")
        with self._lock:
            self._machine.invite(peer_ids, time.monotonic(), sfu=sfu)
            self._carry_out()

    def answer(self) -> None:
        """Answer the incoming call, or accept the invitation into a room (the phone must be ringing).

        Raises
        ------
        nbcall.CallError
            No call or invitation is ringing.
        """
        with self._lock:
            self._machine.answer(time.monotonic())
            self._carry_out()

    def decline(self, reason: str = "declined") -> None:
        """Refuse the incoming call or invitation; the caller (the inviter) learns ``reason``.

        Parameters
        ----------
        reason
            Why, as the caller's ``error`` will say it.

        Raises
        ------
        nbcall.CallError
            No call or invitation is ringing.
        """
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

    # ------------------------------------------------------------------------------------- lifecycle

    def close_replaced(self, reason: str) -> str | None:
        """Close because a new phone of this process takes the ID: the call or room ends with ``reason``, which
        ``error`` shows. Returns the secret this phone registered with, for the new one (see
        :mod:`~nbcall.call.owners`)."""
        with self._lock:
            self._machine.close(reason)
            self._carry_out()
        self._retire()
        return self._client.secret if self._client is not None else None

    def _retire(self) -> None:
        """Close for a takeover (see :meth:`close_replaced`); a widget overrides it to stay on screen."""
        self.close()

    def _register(self, client: SignalingClient, timeout: float) -> dict[str, Any] | None:
        """Register ``client`` (before the adapter exists, so a refused ID leaves nothing behind) and return the
        server's reply; on the background loop's thread, where it cannot wait, None: :meth:`_register_later`
        then registers once the adapter exists, and a refusal shows in ``error``."""
        if kernel.on_loop():
            return None
        return kernel.run(client.register(timeout), timeout=len(client.urls) * timeout + 1)

    def _adopt(
        self, client: SignalingClient | None, machine: CallMachine, registered: dict[str, Any] | None
    ) -> None:
        """Start the adapter's own state (once it exists) with its ``client`` and ``machine``; the machine takes
        the ID the server ``registered`` it with (see :meth:`_register`)."""
        self._lock = AdapterLock()
        self._checks = {}
        self._client, self._machine = client, machine
        if registered:
            machine.user_id = str(registered.get("id", machine.user_id))

    async def _register_later(self, timeout: float, start: Callable[[], None]) -> None:
        """Register a phone made on the background loop's thread (see :meth:`_register`), then ``start`` its client."""
        client = self._client
        assert client is not None
        try:
            registered = await client.register(timeout)
        except SignalingError as exc:  # a refused ID, an unreachable server: the phone says so
            logger.warning("%s could not register: %s", self.user_id, exc)
            with self._lock:
                self._machine.signaling_lost(f"could not register: {exc}")
                self._carry_out()
            return
        self._on_signaling_state(True, registered)
        start()

    def _close_signaling(self, timeout: float = 5) -> None:
        """Leave the signaling server; from any thread but the background loop's, return once the connection
        is closed, so that the ID is free for anyone at once."""
        owners.released(self)
        client = self._client
        if client is None:
            return
        if kernel.on_loop():
            client.close()  # the loop runs this very code: it closes once we return
            return
        try:
            kernel.run(client.aclose(), timeout=timeout)
        except TimeoutError:
            logger.warning("%s: the signaling connection did not close within %s s", self.user_id, timeout)

    # ------------------------------------------------------------------------------------------ waits

    async def wait_for(self, *states: str, timeout: float = 10) -> str:
        """Wait until this phone reaches one of ``states``; raises :class:`CallError` if the call ends first.

        An ``ended`` or ``failed`` left over from an earlier call does not end a wait for ``ringing`` or
        ``calling``, which start a new call.

        Parameters
        ----------
        *states
            States of :data:`nbcall.STATES`; the first one reached is returned.
        timeout
            Seconds to wait.

        Raises
        ------
        nbcall.CallError
            The call ended or failed first (the message says why).
        TimeoutError
            None of ``states`` was reached within ``timeout`` seconds; the message names the current state.
        """
        verdict = self._states_reached(states)
        return await self._wait_async(verdict, ["state"], timeout, partial(self._states_timed_out, states))

    async def wait_for_members(self, *peer_ids: str, timeout: float = 10) -> list[str]:
        """Wait until the data channel to each of ``peer_ids`` (all other members when none) is open.

        Returns the members waited for; raises :class:`CallError` when this phone is not in a room (or the room
        ends meanwhile) or a named member leaves it, :class:`TimeoutError` naming who is not connected yet.

        Parameters
        ----------
        *peer_ids
            Members to wait for; none waits for every other member.
        timeout
            Seconds to wait.

        Raises
        ------
        nbcall.CallError
            This phone is not in a room, the room ended, or a named member left it.
        TimeoutError
            Someone is still not connected after ``timeout`` seconds; the message names who.
        """
        verdict = self._members_connected(peer_ids)
        return await self._wait_async(verdict, _MEMBER_FIELDS, timeout, self._members_timed_out)

    async def wait_until(self, condition: Callable[[], T], *traits: str, timeout: float = 10) -> T:
        """Wait until ``condition()`` returns something true, checked now and whenever one of ``traits``
        changes, and return that: ``held = await phone.wait_until(lambda: phone.held, "held")``.

        For what :meth:`wait_for` and :meth:`wait_for_members` do not cover, without polling. Raises
        :class:`TimeoutError` with the traits' values when it is still false after ``timeout`` seconds, and
        what ``condition`` raised if it raises.

        Parameters
        ----------
        condition
            A function of no arguments; its first true value is returned.
        *traits
            Names of the traits whose changes may make ``condition`` true, such as ``"state"`` or ``"held"``.
        timeout
            Seconds to wait.

        Raises
        ------
        ValueError
            No trait was named, or one is not a trait of this phone.
        TimeoutError
            ``condition()`` was still false after ``timeout`` seconds; the message gives the traits' values.
        """
        unknown = [name for name in traits if not self.has_trait(name)]
        if not traits or unknown:
            raise ValueError(
                f"name the traits whose changes may make the condition true (such as 'state' or 'held'), "
                f"not {unknown or 'none'}"
            )

        def verdict(first: bool) -> T | Exception | None:
            try:
                value = condition()
            except Exception as exc:  # noqa: BLE001 (the waiter gets it, not the thread that changed a trait)
                return exc
            return value if value else None

        def timed_out(timeout: float) -> Exception:
            values = ", ".join(f"{name} = {getattr(self, name)!r}" for name in traits)
            return TimeoutError(
                f"{self.user_id}: the condition still did not hold after {timeout} s ({values})"
            )

        return await self._wait_async(verdict, list(traits), timeout, timed_out)

    def _wait_states(self, states: tuple[str, ...], timeout: float) -> str:
        """:meth:`wait_for`, blocking the calling thread (never the background loop's)."""
        verdict = self._states_reached(states)
        return self._wait_blocking(verdict, ["state"], timeout, partial(self._states_timed_out, states))

    def _wait_members(self, peer_ids: tuple[str, ...], timeout: float) -> list[str]:
        """:meth:`wait_for_members`, blocking the calling thread (never the background loop's)."""
        verdict = self._members_connected(peer_ids)
        return self._wait_blocking(verdict, _MEMBER_FIELDS, timeout, self._members_timed_out)

    async def _wait_async(
        self, verdict: Verdict[T], names: list[str], timeout: float, timed_out: Callable[[float], Exception]
    ) -> T:
        future, stop = self._watch(verdict, names)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), timeout)
        except asyncio.TimeoutError:
            raise timed_out(timeout) from None
        finally:
            stop()

    def _wait_blocking(
        self, verdict: Verdict[T], names: list[str], timeout: float, timed_out: Callable[[float], Exception]
    ) -> T:
        if kernel.on_loop():
            raise RuntimeError(
                f"{self.user_id}: a blocking wait in a callback on nbcall's background loop would stop the loop it "
                "waits for; await wait_for(...) in async code instead, or wait from a cell or another thread"
            )
        future, stop = self._watch(verdict, names)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            raise timed_out(timeout) from None
        finally:
            stop()

    def _watch(
        self, verdict: Verdict[T], names: list[str]
    ) -> tuple[concurrent.futures.Future[T], Callable[[], None]]:
        """A future settled by the first ``verdict(first)`` that is not None: checked now (``first`` True) and
        whenever one of the traits ``names`` changes; and the function that stops watching.

        Verdicts are taken under the lock, which every change of the machine's fields holds, so that each sees
        the fields of one moment.
        """
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def check(first: bool) -> None:
            with self._lock:
                if future.done():
                    return
                outcome = verdict(first)
                try:
                    if isinstance(outcome, Exception):
                        future.set_exception(outcome)
                    elif outcome is not None:
                        future.set_result(outcome)
                except concurrent.futures.InvalidStateError:
                    pass  # the waiter gave up (timed out, cancelled) meanwhile

        def stop() -> None:
            with self._lock:
                for name in names:
                    self._checks[name].remove(check)

        # Checked as each change is made, not after the lock is released as observers are: a wait for
        # "connected" must not miss a call that connected and ended before the lock was released.
        with self._lock:
            for name in names:
                self._checks.setdefault(name, []).append(check)
        check(True)
        return future, stop

    def _states_reached(self, states: tuple[str, ...]) -> Verdict[str]:
        unknown = set(states) - set(STATES)
        if not states or unknown:
            raise ValueError(f"wait for one or more of {STATES}, not {sorted(unknown) or 'nothing'}")
        starts_a_call = "ringing" in states or "calling" in states

        def verdict(first: bool) -> str | Exception | None:
            state = self.state
            if state in states:
                return state
            # An ended call ends a wait for its progress; but "ringing" and "calling" start a new call, which
            # may come after a previous call's end.
            if state in ("ended", "failed") and not (first and starts_a_call):
                reason = f": {self.error}" if self.error else ""
                return CallError(f"{self.user_id}'s call {state}{reason}")
            return None

        return verdict

    def _members_connected(self, peer_ids: tuple[str, ...]) -> Verdict[list[str]]:
        return lambda first: self._members_verdict(peer_ids)

    def _members_verdict(self, peer_ids: tuple[str, ...]) -> list[str] | Exception | None:
        """What ``wait_for_members`` has come to: the members waited for, an error, or None (not yet)."""
        machine = self._machine
        if not (machine.room or machine.room_asked) and machine.state != "ringing":
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

    def _states_timed_out(self, states: tuple[str, ...], timeout: float) -> TimeoutError:
        return TimeoutError(
            f"{self.user_id} did not reach {' or '.join(states)} within {timeout} s (state {self.state!r})"
            f"{self._timeout_hint()}"
        )

    def _members_timed_out(self, timeout: float) -> TimeoutError:
        waiting = {m: s for m, s in self.connections.items() if s != "connected"}
        return TimeoutError(
            f"{self.user_id}'s room did not connect within {timeout} s: {waiting or 'no other member yet'}"
            f"{self._timeout_hint()}"
        )

    def _to_receiver(self, work: Callable[[], Any]) -> None:
        """Do ``work`` on the file receiver on the thread that owns it (with the lock held): here, the background
        loop, where a Peer receives; a Phone receives on another thread (see its own)."""
        work()

    def _timeout_hint(self) -> str:
        """What a timed-out wait adds to its message: the likeliest cause, when there is one."""
        return ""

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
            self._to_receiver(
                partial(self._files.learn, message)
            )  # does the peer resume files (call, answer)
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


#: The traits a wait for the members of a room follows.
_MEMBER_FIELDS = ["state", "room", "members", "connections"]
