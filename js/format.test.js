// The view's pure text (node --test): the signaling pretty-printer, log values, statistics rows, times.
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  candidateText, closedText, describe, eventValue, logSize, logTime, previewBytes, progressText, roomStatusText, rtpRows, sparkPoints,
  statusText,
} from "./format.js";

const SDP = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\n";

test("a call's SDP is unwrapped from its JSON string and shown below the message, line by line", () => {
  const call = { type: "call", from: "A", to: "B", sdp: JSON.stringify({ type: "offer", sdp: SDP }), framing: "nbcall/1" };
  const text = describe(call);
  const [head, sdp] = text.split("\n\n");
  assert.deepEqual(JSON.parse(head), {
    type: "call", from: "A", to: "B", sdp: { type: "offer", sdp: "(below)" }, framing: "nbcall/1",
  });
  assert.equal(sdp, "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-");
});

test("a candidate is unwrapped into its fields", () => {
  const candidate = { candidate: "candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host", sdpMid: "0", sdpMLineIndex: 0 };
  const text = describe({ type: "ice", from: "A", candidate: JSON.stringify(candidate) });
  assert.deepEqual(JSON.parse(text), { type: "ice", from: "A", candidate });
});

test("strings that are not JSON, and values that are not objects, are shown as they are", () => {
  assert.deepEqual(JSON.parse(describe({ type: "ice", candidate: "not json" })), { type: "ice", candidate: "not json" });
  assert.deepEqual(JSON.parse(describe({ sdp: JSON.stringify({ type: "offer" }) })), { sdp: { type: "offer" } });
  assert.equal(describe("connected"), "connected");
  assert.equal(describe(null), "");
  assert.equal(describe(undefined), "");
  assert.equal(describe(3), "3");
  assert.equal(describe(["turn:x"]), '[\n  "turn:x"\n]');
});

test("the pretty-printer does not change the logged message", () => {
  const call = { type: "answer", sdp: JSON.stringify({ type: "answer", sdp: SDP }) };
  const before = JSON.stringify(call);
  describe(call);
  assert.equal(JSON.stringify(call), before);
});

test("an event's value: a state, a list of ICE servers (or none), a data channel's label", () => {
  assert.equal(eventValue("connected"), "connected");
  assert.equal(eventValue(["turn:127.0.0.1:3478", "stun:127.0.0.1:3479"]), "turn:127.0.0.1:3478, stun:127.0.0.1:3479");
  assert.equal(eventValue([]), "none");
  assert.equal(eventValue({ type: "channel", state: "open", label: "nbcall" }), "nbcall");
  assert.equal(eventValue({ kinds: ["video"] }), "");
  assert.equal(eventValue(null), "");
});

test("a log row's size column: the value for events, the bytes for messages", () => {
  assert.equal(logSize({ t: 0, dir: "event", type: "connectionState", size: 0, detail: "new" }), "new");
  assert.equal(logSize({ t: 0, dir: "out", type: "call", size: 1234, detail: {} }), "1234 B");
  assert.equal(logSize({ t: 0, dir: "in", type: "registered", size: 0, detail: {} }), "");
});

test("log times are UTC with milliseconds", () => {
  assert.equal(logTime(Date.UTC(2026, 10, 30, 12, 34, 56, 789) / 1000), "12:34:56.789");
});

test("statistics rows: rates, packets, loss, jitter, frames and size, audio level", () => {
  assert.deepEqual(rtpRows("video in", null), []);
  assert.deepEqual(
    rtpRows("video in", { bytes: 1, packets: 20, kbps: 7.2, packets_lost: 0, jitter_ms: 10, frames: 30, fps: 30, width: 640, height: 480 }),
    [["video in", "7.2 kbit/s, 20 packets, 0 lost, jitter 10 ms, 30 frames, 30 fps, 640×480"]],
  );
  assert.deepEqual(
    rtpRows("audio in", { bytes: 1, packets: 10, kbps: null, packets_lost: 1, jitter_ms: null, audio_level: 0.3 }),
    [["audio in", "… kbit/s, 10 packets, 1 lost, level 0.30"]],
  );
  assert.deepEqual(rtpRows("video out", { bytes: 1, packets: 19, kbps: 6.4, frames: 30, fps: null, width: null }), [
    ["video out", "6.4 kbit/s, 19 packets, 30 frames, 0 fps"],
  ]);
});

test("a candidate pair's ends", () => {
  assert.equal(candidateText({ type: "host", protocol: "udp", address: "127.0.0.1", port: 5000 }), "host udp 127.0.0.1:5000");
  assert.equal(candidateText(null), undefined);
});

test("the status line names the peer", () => {
  assert.equal(statusText("ringing", "B"), "B is calling you");
  assert.equal(statusText("idle", ""), "Ready");
  assert.equal(statusText("on-hold", "B"), "on-hold"); // a state this view does not know shows as itself
});

test("a binary message's preview: size and up to 16 bytes in hex", () => {
  assert.equal(previewBytes(new Uint8Array([0, 1, 255])), "3 bytes: 00 01 ff");
  assert.equal(previewBytes(new Uint8Array(17)), `17 bytes: ${Array(16).fill("00").join(" ")} …`);
});

test("sparkline points span the width, scale to the top, and skip missing samples", () => {
  assert.equal(sparkPoints([0, 10], 10, 120, 28), "0,27 120,1");
  assert.equal(sparkPoints([5, null, 10], 10, 120, 28), "0,14 120,1");
  assert.equal(sparkPoints([3], 3, 120, 28), "0,1");
  assert.equal(sparkPoints([], 1, 120, 28), "");
});

test("the room status line: an invitation names who invites and who is in, a room its other members", () => {
  const base = { user: "C", room: "", members: [], invitation: {} };
  assert.equal(
    roomStatusText({ ...base, state: "ringing", invitation: { from: "A", members: ["A", "B"] } }),
    "A invites you into a room with A, B",
  );
  assert.equal(roomStatusText({ ...base, state: "calling" }), "Inviting… the room starts when someone accepts");
  assert.equal(roomStatusText({ ...base, state: "calling", peer: "B" }), null); // a 1:1 call: statusText says it
  assert.equal(roomStatusText({ ...base, state: "ringing" }), null); // a 1:1 call rings
  assert.equal(roomStatusText({ ...base, state: "connected" }), null);
  assert.equal(
    roomStatusText({ ...base, state: "connected", room: "r-1", members: ["A", "B", "C"] }),
    "In a room with A, B (3 members)",
  );
});

test("a transfer under way reads as what, how much, how fast and how long still", () => {
  const MiB = 1024 * 1024;
  const base = { direction: /** @type {const} */ ("in"), peer: "B", name: "a.bin", done: 12 * MiB, total: 50 * MiB, rate: 8 * MiB, eta: 4.75 };
  assert.equal(progressText(base), "↓ a.bin from B: 12.0 MiB of 50.0 MiB · 8.0 MiB/s · 5 s left");
  assert.equal(
    progressText({ ...base, direction: "out", name: null, total: null, eta: null, done: 1536, rate: 512 }),
    "↑ a message to B: 1.5 KiB · 512 B/s",
  );
  assert.equal(progressText({ ...base, eta: 0.2 }).endsWith("<1 s left"), true);
});

test("a phone replaced by a new one says it is closed, why, and which phone to use", () => {
  assert.equal(closedText("A", "replaced by a new phone"), "This phone is closed (replaced by a new phone): use the new A phone");
  assert.equal(closedText("A", ""), "This phone is closed: use the new A phone");
});
