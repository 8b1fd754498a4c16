"""The Phone's camera and microphone (:meth:`mute`, :meth:`camera`, what the browser reports of them) and its
browser check (:meth:`diagnose`)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from ..teach.diagnose import Diagnosis
from .media import device_names, media_advice
from .phone_part import PhonePart, settle

__all__ = ["MediaControls"]

logger = logging.getLogger("nbcall.widget.phone")


class MediaControls(PhonePart):
    """A Phone's microphone and camera switches, the media its browser reports, and :meth:`diagnose`."""

    def mute(self) -> None:
        """Send silence instead of the microphone (the track stays, disabled); :meth:`unmute` undoes it."""
        self.set_trait("mic_on", False)

    def unmute(self) -> None:
        """Send the microphone's sound again."""
        self.set_trait("mic_on", True)

    def camera(self, on: bool = True) -> None:
        """Turn the camera's picture on or off: off, the peer receives black frames.

        Parameters
        ----------
        on
            True to send the camera's picture, False for black frames.
        """
        self.set_trait("camera_on", bool(on))

    async def diagnose(self, timeout: float = 30) -> Diagnosis:
        """Check this phone's browser: secure context, cameras and microphones, and which candidate types each
        of :attr:`ice_servers` yields (TURN credentials accepted or refused), with advice for each failure.

        Parameters
        ----------
        timeout
            Seconds to wait for the browser's report.

        Raises
        ------
        TimeoutError
            No browser shows this phone, or it did not report within ``timeout`` seconds.
        """
        loop = asyncio.get_running_loop()
        reply: asyncio.Future[Any] = loop.create_future()
        request = self._request_diagnosis((loop, reply))
        try:
            return Diagnosis(await asyncio.wait_for(reply, timeout))
        except asyncio.TimeoutError:
            hint = "" if self._frontend else f": no browser shows {self.user_id} yet, display it in a cell"
            raise TimeoutError(f"{self.user_id}'s browser did not report within {timeout} s{hint}") from None
        finally:
            with self._lock:
                self._diagnoses.pop(request, None)

    def _request_diagnosis(self, waiter: tuple[asyncio.AbstractEventLoop, asyncio.Future[Any]] | None) -> str:
        request = uuid.uuid4().hex
        with self._lock:
            if waiter is not None:
                self._diagnoses[request] = waiter
            self._browser({"type": "diagnose", "id": request, "ice_servers": self.ice_servers})
        return request

    def _check_from_widget(self) -> None:
        self._request_diagnosis(None)

    def _on_browser_media(self, content: dict[str, Any], buffers: list[bytes]) -> None:
        self._apply({"local_media": content["local"], "remote_media": content["remote"]})
        self._log_entry("event", "media", {"local": content["local"], "remote": content["remote"]})
        # One sentence per cause: "camera and microphone" when both failed the same way.
        causes: dict[tuple[str, str], list[str]] = {}
        for problem in content["errors"]:
            causes.setdefault((problem["name"], problem["message"]), []).append(problem["kind"])
        for (name, message), kinds in causes.items():
            self._media_error(kinds, name, message)

    def _media_error(self, kinds: list[str], name: str, message: str) -> None:
        """Media this phone wanted are not in the call: say why, and that the call goes on without them."""
        if name == "NotOffered":
            # Not a fault: the caller offered no section for it (a data-only phone, say).
            self._log_entry(
                "event",
                "media",
                f"{self.peer} offered no {'/'.join(kinds)}: sending no {device_names(kinds)}",
            )
            return
        settings = " and ".join(f"{k}={getattr(self, k)!r}" for k in kinds)
        text = media_advice(kinds, name, message, settings)
        if self.media_error and text not in self.media_error:
            text = f"{self.media_error}\n{text}"
        logger.warning("%s: %s", self.user_id, text)
        self._log_entry("event", "media-error", {"kinds": kinds, "name": name, "message": message})
        self._apply({"media_error": text, "error": text})

    def _on_browser_diagnosis(self, content: dict[str, Any], buffers: list[bytes]) -> None:
        waiter = self._diagnoses.get(str(content["id"]))
        if waiter is not None:  # None: the widget's button asked, and the widget shows the report
            loop, reply = waiter
            loop.call_soon_threadsafe(settle, reply, content["report"])
