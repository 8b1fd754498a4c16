"""What travels between the sides, shared by all of them: message payloads, their data-channel framing, and the
signaling faults a lesson can put on purpose. Nothing here imports another part of nbcall but its exceptions."""
