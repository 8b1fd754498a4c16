"""nbcall: a WebRTC phone in a Jupyter notebook cell.

>>> import nbcall
>>> a = nbcall.Phone("A"); b = nbcall.Phone("B")   # display each to see it
>>> a.call("B"); b.answer()
>>> a.send({"x": [1, 2, 3]})                          # b.messages[-1].data == {"x": [1, 2, 3]}
"""

from .exceptions import CallError, NbcallError, SignalingError
from .faults import Faults
from .kernel import serve
from .payload import Message
from .peer import Peer
from .phone import STATES, Phone
from .sdp import explain_sdp
from .turn import turn_credentials

__all__ = [
    "STATES",
    "CallError",
    "Faults",
    "Message",
    "NbcallError",
    "Peer",
    "Phone",
    "SignalingError",
    "explain_sdp",
    "serve",
    "turn_credentials",
]
__version__ = "0.1.0"
