"""The Phone's tools for learning: step-through signaling, manual signaling by copied text, and the explained SDP."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

from ..call import kernel
from ..call.machine import FREE
from ..exceptions import CallError
from ..teach import manual
from ..teach.sdp import Negotiation
from ..teach.steps import explain_step
from .phone_part import PhonePart

__all__ = ["Teaching"]


class Teaching(PhonePart):
    """A Phone's step-through negotiation (:attr:`stepping`, :meth:`step`), manual signaling (``server=False``:
    :meth:`create_offer`, :meth:`accept_offer`, :meth:`accept_answer`) and :meth:`explain`."""

    def step(self) -> dict[str, Any] | None:
        """Send the oldest held signaling message (see :attr:`stepping`); returns it, or None if none waits."""
        with self._lock:
            if not self.held:
                return None
            first, rest = self.held[0], self.held[1:]
            self.set_trait("held", rest)
            self._outbox(first["message"])
            self._carry_out()
            return dict(first["message"])

    async def create_offer(self, peer: str = "peer", timeout: float = 10) -> str:
        """Manual signaling (``server=False``): start a call and return its offer, candidates included, as text.

        Give the text to the other phone's :meth:`accept_offer`, and its answer to :meth:`accept_answer`.
        ``peer`` names the other side in this phone's traits and log.

        Parameters
        ----------
        peer
            The name of the other side, for this phone's traits and log.
        timeout
            Seconds to wait for the browser to gather its candidates.

        Raises
        ------
        nbcall.CallError
            The phone has a signaling server (use :meth:`call`), or cannot start a call now.
        """
        self._need_manual("create_offer")
        gathered = self._expect_gathering(peer)
        with self._lock:
            self._manual_out.clear()
            self._machine.call(peer, time.monotonic())
            self._carry_out()
        return await self._manual_text(peer, gathered, "an offer", timeout)

    async def accept_offer(self, offer: str, timeout: float = 10) -> str:
        """Manual signaling: answer the offer text from the other phone's :meth:`create_offer`; returns the
        answer as text for its :meth:`accept_answer`.

        Parameters
        ----------
        offer
            The text :meth:`create_offer` returned on the other phone.
        timeout
            Seconds to wait for the browser's answer and candidates.

        Raises
        ------
        nbcall.CallError
            The phone has a signaling server, or could not take the offer.
        ValueError
            ``offer`` is not an offer made by :meth:`create_offer`.
        """
        self._need_manual("accept_offer")
        messages = manual.unpack(offer, "call")
        caller = str(messages[0].get("from") or "peer")
        gathered = self._expect_gathering(caller)
        with self._lock:
            self._manual_out.clear()
            now = time.monotonic()
            for message in messages:
                self._log_entry("in", str(message.get("type")), message, len(json.dumps(message)))
                self._machine.receive({**message, "from": caller, "to": self.user_id}, now)
                if self._machine.state == "ringing":
                    self._machine.answer(now)
            self._carry_out()
        if self.peer != caller or self.state in FREE:
            raise CallError(
                f"{self.user_id} could not take the offer from {caller}: {self.error or self.state}"
            )
        return await self._manual_text(caller, gathered, "an answer", timeout)

    async def accept_answer(self, answer: str, timeout: float = 10) -> None:
        """Manual signaling: take the answer text from the other phone's :meth:`accept_offer`, and wait until
        the call is connected.

        Parameters
        ----------
        answer
            The text :meth:`accept_offer` returned on the other phone.
        timeout
            Seconds to wait for the call to connect.

        Raises
        ------
        nbcall.CallError
            The phone has a signaling server, or has no offer out.
        ValueError
            ``answer`` is not an answer made by :meth:`accept_offer`.
        """
        self._need_manual("accept_answer")
        messages = manual.unpack(answer, "answer")
        with self._lock:
            if self.state != "calling":
                raise CallError(
                    f"{self.user_id} has no offer out (state {self.state!r}): create_offer() first"
                )
            now = time.monotonic()
            for message in messages:
                self._log_entry("in", str(message.get("type")), message, len(json.dumps(message)))
                self._machine.receive({**message, "from": self.peer, "to": self.user_id}, now)
            self._carry_out()
        await self.wait_for("connected", timeout=timeout)

    def explain(self, peer: str | None = None) -> Negotiation | None:
        """The offer and answer exchanged with ``peer`` (the current or last peer by default), every line
        explained, and what the answer chose from the offer; None before any. Shows as tables in a notebook.

        Parameters
        ----------
        peer
            Whose negotiation to explain; the current or last peer by default.
        """
        with self._lock:
            return self._descriptions.get(peer if peer is not None else self.peer)

    def _signal(self, message: dict[str, Any]) -> None:
        """A message for the signaling server: held while stepping, then through the faults, if any."""
        if self.stepping:
            self.set_trait("held", [*self.held, {"message": message, **explain_step(message)}])
            self._log_entry("event", "held", explain_step(message))
        else:
            self._outbox(message)

    def _transmit(self, message: dict[str, Any]) -> None:
        """Send to the server (or, with manual signaling, keep for the text); logs it as sent."""
        with self._lock:
            if self._client is None:
                self._manual_out.append(message)
                size = len(json.dumps(message))
            else:
                size = len(self._client.send(message).encode())
            self._log_entry("out", message["type"], message, size)

    def _dropped(self, message: dict[str, Any], why: str) -> None:
        with self._lock:
            self._log_entry(
                "event", "fault", f"not sent: the {message['type']} message to {message.get('to')} ({why})"
            )

    def _later(self, delay: float, fn: Callable[[], None]) -> None:
        """Run ``fn`` in ``delay`` seconds on the background loop (for delayed or reordered messages)."""
        kernel.call_soon(lambda: asyncio.get_running_loop().call_later(delay, fn))

    def _step_from_widget(self) -> None:
        self.step()

    def _on_stepping(self, change: Any) -> None:
        if not change["new"]:  # stepping off: what waited goes now, in order
            while self.step() is not None:
                pass

    def _need_manual(self, action: str) -> None:
        if self._client is not None:
            raise CallError(
                f"{action}() is for phones without a signaling server (Phone(..., server=False)); "
                f"{self.user_id} has one: use call() and answer()"
            )

    def _expect_gathering(self, peer: str) -> asyncio.Future[None]:
        """A future resolved when the browser has gathered its candidates for ``peer`` (made before the call
        starts, so that a quick gathering is not missed)."""
        gathered: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._gathered[peer] = gathered
        return gathered

    async def _manual_text(self, peer: str, gathered: asyncio.Future[None], what: str, timeout: float) -> str:
        """Wait until the browser gathered its ICE candidates for ``peer``, then pack what it would have sent."""
        try:
            await asyncio.wait_for(gathered, timeout)
        except asyncio.TimeoutError:
            hint = "" if self._frontend else f"; no browser shows {self.user_id} yet: display it in a cell"
            raise TimeoutError(f"{self.user_id} made no {what[3:]} within {timeout} s{hint}") from None
        finally:
            self._gathered.pop(peer, None)
        with self._lock:
            return manual.pack(list(self._manual_out))

    def _send_sdp(self) -> None:
        """The widget's SDP panel asked: send it the explained offer and answer of each peer (protocol ``sdp``)."""
        for peer in self._descriptions.peers():
            negotiation = self._descriptions.get(peer)
            if negotiation is not None:
                self._browser(negotiation.to_json())
