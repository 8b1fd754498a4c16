"""What to tell the user when a camera or microphone cannot be used: the cause and what to do."""

from __future__ import annotations

__all__ = ["device_names", "media_advice"]

_DEVICE = {"audio": "microphone", "video": "camera"}
# getUserMedia's errors (DOMException names), as what happened and what to do.
_ADVICE = {
    "NotAllowedError": "permission to use the {device} was denied: allow it for this page in the browser "
    "(the icon left of the address bar) and call again",
    "NotFoundError": "no {device} was found: connect one, or create the phone without it",
    "NotReadableError": "the {device} could not be started (another application may be using it): "
    "close that application and call again",
    "OverconstrainedError": "no {device} satisfies the constraints {settings}: loosen them",
    "InsecureContext": "the browser gives no {device} to this page because it is not a secure context: "
    "open JupyterLab at https://... or http://localhost",
}


def device_names(kinds: list[str]) -> str:
    """``["audio", "video"]`` -> ``"camera and microphone"``."""
    return " and ".join(_DEVICE.get(k, k) for k in sorted(kinds, reverse=True))


def media_advice(kinds: list[str], name: str, message: str, settings: str) -> str:
    """One sentence for media of ``kinds`` that failed with the DOMException ``name`` and ``message``."""
    device = device_names(kinds)
    advice = _ADVICE.get(name, "the browser could not open the {device}")
    text = f"{advice.format(device=device, settings=settings)} ({name}: {message}). "
    return text + f"The call goes on without your {device}."
