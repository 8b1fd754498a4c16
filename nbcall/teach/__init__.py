"""Tools for learning WebRTC: every SDP line explained (:mod:`~nbcall.teach.sdp`), what each signaling step does,
manual copy-and-paste signaling, the browser's set-up diagnosis, and a coturn TURN server on loopback for
lessons (:func:`nbcall.teach.coturn.start_turn_server`)."""
