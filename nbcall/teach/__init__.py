"""Tools for learning WebRTC: every SDP line explained (:mod:`~nbcall.teach.sdp`), what each signaling step does,
manual copy-and-paste signaling, the browser's set-up diagnosis, a coturn TURN server on loopback for
lessons (:func:`nbcall.teach.coturn.start_turn_server`) and a Janus SFU for rooms past the mesh
(:func:`nbcall.teach.janus.start_janus`)."""
