"""nbcall: a WebRTC phone in a Jupyter notebook cell.

>>> import nbcall
>>> a = nbcall.Phone("A"); b = nbcall.Phone("B")   # display each to see it
>>> a.call("B"); b.answer()
>>> a.send({"x": [1, 2, 3]})                          # b.messages[-1].data == {"x": [1, 2, 3]}
"""

from .call.kernel import serve
from .exceptions import CallError, NbcallError, SignalingError
from .peer.peer import Peer
from .server.turn import turn_credentials
from .teach.sdp import explain_sdp
from .widget.phone import STATES, Phone
from .wire.faults import Faults
from .wire.payload import Message

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
