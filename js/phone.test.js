// The phone and its peer links (node --test) against stand-ins for RTCPeerConnection, MediaStream and the
// model: negotiation as the browser does it, `peer` on every message to Python, today's Python half without
// `peer`, and closing that leaves nothing running.
import assert from "node:assert/strict";
import { afterEach, beforeEach, test } from "node:test";
import { FrameDecoder, encodeFrames } from "./framing.js";
import { BrowserPhone } from "./phone.js";
import { FINGERPRINT } from "./protocol.js";

class FakeTrack {
  /** @param {string} kind */
  constructor(kind) {
    this.kind = kind;
    this.enabled = true;
    this.stopped = false;
  }
  stop() {
    this.stopped = true;
  }
  addEventListener() {}
}

class FakeStream {
  /** @param {FakeTrack[]} [tracks] */
  constructor(tracks = []) {
    this.tracks = [...tracks];
  }
  getTracks() {
    return this.tracks;
  }
  getVideoTracks() {
    return this.tracks.filter((t) => t.kind === "video");
  }
  getAudioTracks() {
    return this.tracks.filter((t) => t.kind === "audio");
  }
  /** @param {FakeTrack} t */
  addTrack(t) {
    this.tracks.push(t);
  }
  /** @param {FakeTrack} t */
  removeTrack(t) {
    this.tracks = this.tracks.filter((x) => x !== t);
  }
}

/** Records what the phone does to it; descriptions are {type, sdp} with the media kinds as the SDP. */
class FakePC extends EventTarget {
  /** @type {FakePC[]} */
  static all = [];
  /** @param {RTCConfiguration} config */
  constructor(config) {
    super();
    this.config = config;
    this.connectionState = "new";
    this.iceConnectionState = "new";
    this.iceGatheringState = "new";
    this.signalingState = "stable";
    /** @type {{type: string, sdp: string} | null} */
    this.localDescription = null;
    /** @type {{type: string, sdp: string} | null} */
    this.remoteDescription = null;
    /** @type {{direction: string, sender: {track: FakeTrack | null, replaceTrack(t: FakeTrack): Promise<void>}, receiver: {track: {kind: string}}}[]} */
    this.transceivers = [];
    /** @type {RTCIceCandidateInit[]} */
    this.candidates = [];
    /** @type {{label: string, readyState: string, sent: unknown[], onopen?: () => void, onmessage?: (e: {data: unknown}) => void}[]} */
    this.channels = [];
    /** @type {(() => void) | null} */
    this.onnegotiationneeded = null;
    /** @type {{type: string, sdp: string} | null} */
    this.currentLocal = null;
    this.rolledBack = 0;
    this.closed = false;
    this.sctp = null;
    /** @type {((e: {candidate: object | null}) => void) | null} */
    this.onicecandidate = null;
    FakePC.all.push(this);
  }
  getConfiguration() {
    return this.config;
  }
  /** @param {FakeTrack | string} what @param {{direction: string}} init */
  addTransceiver(what, init) {
    const kind = typeof what === "string" ? what : what.kind;
    const sender = {
      track: typeof what === "string" ? null : what,
      async replaceTrack(/** @type {FakeTrack} */ t) {
        sender.track = t;
      },
    };
    const t = { direction: init.direction, sender, receiver: { track: { kind } } };
    this.transceivers.push(t);
    return t;
  }
  getTransceivers() {
    return this.transceivers;
  }
  getSenders() {
    return this.transceivers.map((t) => t.sender);
  }
  /** @param {string} label */
  createDataChannel(label) {
    const channel = { label, readyState: "connecting", sent: /** @type {unknown[]} */ ([]), send(/** @type {unknown} */ data) { channel.sent.push(data); } };
    this.channels.push(channel);
    return channel;
  }
  sdp() {
    return this.transceivers.map((t) => `${t.receiver.track.kind}:${t.direction}`).join(" ");
  }
  async createOffer() {
    return { type: "offer", sdp: this.sdp() };
  }
  async createAnswer() {
    return { type: "answer", sdp: this.sdp() };
  }
  /** @param {{type: string, sdp?: string}} d */
  async setLocalDescription(d) {
    if (this.closed) throw new Error("InvalidStateError: closed");
    if (d.type === "rollback") {
      this.localDescription = this.currentLocal ?? null;
      this.rolledBack = (this.rolledBack ?? 0) + 1;
      this.setSignaling("stable");
      return;
    }
    if (d.type === "offer" && this.signalingState !== "stable") throw new Error(`InvalidStateError: offer in ${this.signalingState}`);
    this.localDescription = /** @type {{type: string, sdp: string}} */ (d);
    if (d.type === "answer") this.currentLocal = this.localDescription;
    this.setSignaling(d.type === "offer" ? "have-local-offer" : "stable");
  }
  /** @param {{type: string, sdp: string}} d */
  async setRemoteDescription(d) {
    if (this.closed) throw new Error("InvalidStateError: closed");
    if (d.type === "offer" && this.signalingState !== "stable") throw new Error(`InvalidStateError: offer in ${this.signalingState}`);
    this.remoteDescription = d;
    if (d.type === "offer") {
      for (const m of d.sdp.split(" ").filter(Boolean)) this.addTransceiver(m.split(":")[0], { direction: "recvonly" });
    }
    this.setSignaling(d.type === "offer" ? "have-remote-offer" : "stable");
  }
  /** @param {string} state */
  setSignaling(state) {
    this.signalingState = state;
    this.dispatchEvent(new Event("signalingstatechange"));
  }
  /** @param {RTCIceCandidateInit} c */
  async addIceCandidate(c) {
    if (!this.remoteDescription) throw new Error("InvalidStateError: no remote description");
    this.candidates.push(c);
  }
  close() {
    this.closed = true;
    this.signalingState = "closed";
  }
}

/** A model stand-in: traits, listeners, and the messages sent (batches unpacked). @param {Record<string, unknown>} traits */
function fakeModel(traits) {
  /** @type {Map<string, Set<Function>>} */
  const listeners = new Map();
  /** @type {Record<string, unknown>[]} */
  const sent = [];
  return {
    sent,
    listeners,
    /** @param {string} name */
    get: (name) => /** @type {never} */ (traits[name]),
    /** Python changes a trait. @param {string} name @param {unknown} value */
    set(name, value) {
      traits[name] = value;
      for (const cb of listeners.get(`change:${name}`) ?? []) cb();
    },
    /** @param {string} event @param {Function} cb */
    on(event, cb) {
      if (!listeners.has(event)) listeners.set(event, new Set());
      listeners.get(event)?.add(cb);
    },
    /** @param {string} event @param {Function} cb */
    off(event, cb) {
      listeners.get(event)?.delete(cb);
    },
    /** The byte lengths of the buffers sent with each message that had some. @type {number[][]} */
    buffers: [],
    /** @param {Record<string, unknown>} content @param {unknown} [_callbacks] @param {ArrayBuffer[]} [buffers] */
    send(content, _callbacks, buffers) {
      if (content.type === "batch") sent.push(.../** @type {Record<string, unknown>[]} */ (content.messages));
      else sent.push(content);
      if (buffers) this.buffers.push(buffers.map((b) => b.byteLength));
    },
    /** @param {unknown} content @param {DataView[]} [buffers] */
    python(content, buffers = []) {
      for (const cb of listeners.get("msg:custom") ?? []) cb(content, buffers);
    },
  };
}

/** Devices that grant only the kinds in `have`. @param {string[]} have */
function devices(have) {
  return {
    /** @param {Record<string, unknown>} constraints */
    async getUserMedia(constraints) {
      const kinds = Object.keys(constraints);
      if (!kinds.every((k) => have.includes(k))) throw Object.assign(new Error("no device"), { name: "NotFoundError" });
      return new FakeStream(kinds.map((k) => new FakeTrack(k)));
    },
  };
}

const settle = () => new Promise((resolve) => setTimeout(resolve, 5));
/** @type {BrowserPhone[]} */
let phones = [];
const saved = { ...globalThis };

beforeEach(() => {
  FakePC.all = [];
  Object.assign(globalThis, { RTCPeerConnection: FakePC, MediaStream: FakeStream });
  Object.defineProperty(globalThis, "navigator", { value: { mediaDevices: devices(["audio"]) }, configurable: true });
});

afterEach(() => {
  // Disposing closes every link and clears its stats timer: a leaked timer would keep node from exiting.
  for (const p of phones) p.dispose();
  phones = [];
  Object.assign(globalThis, { RTCPeerConnection: saved.RTCPeerConnection, MediaStream: saved.MediaStream });
});

/** @param {Record<string, unknown>} [traits] */
function newPhone(traits = {}) {
  const model = fakeModel({ audio: true, video: true, mic_on: true, camera_on: false, peer: "", ...traits });
  const phone = new BrowserPhone(/** @type {never} */ (model));
  phones.push(phone);
  return { model, phone };
}

test("a call's offer carries our media, recvonly for a wanted medium we could not get, and the framing", async () => {
  const { model, phone } = newPhone();
  model.python({ type: "start_call", peer: "B", ice_servers: [{ urls: "stun:127.0.0.1:3478" }] });
  await settle();
  const pc = FakePC.all[0];
  assert.deepEqual(pc.transceivers.map((t) => [t.receiver.track.kind, t.direction]), [["audio", "sendrecv"], ["video", "recvonly"]]);
  assert.deepEqual(pc.channels.map((c) => c.label), ["nbcall"]);
  const signal = model.sent.find((m) => m.type === "signal");
  assert.deepEqual(signal, {
    type: "signal",
    peer: "B",
    signal: {
      type: "call", sdp: JSON.stringify({ type: "offer", sdp: "audio:sendrecv video:recvonly" }), framing: "nbcall/1",
      framing_ext: ["length", "resume", "start"],
    },
  });
  const media = model.sent.find((m) => m.type === "media");
  assert.deepEqual(media, {
    type: "media",
    local: { audio: true, video: false },
    remote: { audio: false, video: false },
    errors: [{ kind: "video", name: "NotFoundError", message: "no device" }],
  });
  assert.deepEqual(model.sent.find((m) => m.name === "iceServers"), { type: "rtc", peer: "B", name: "iceServers", value: ["stun:127.0.0.1:3478"] });
  // camera_on false, mic_on true: the audio track is enabled.
  assert.equal(phone.localStream?.getTracks()[0].enabled, true);
  // Every message about the call names the peer.
  for (const m of model.sent.filter((m) => ["signal", "rtc", "channel", "stats", "message"].includes(String(m.type)))) {
    assert.equal(m.peer, "B", JSON.stringify(m));
  }
});

test("candidates that arrive before the offer wait for it, then go in, in order", async () => {
  const { model } = newPhone({ audio: false, video: false });
  const ice = (/** @type {number} */ n) => ({ type: "remote", peer: "A", signal: { type: "ice", from: "A", candidate: JSON.stringify({ candidate: `c${n}` }) } });
  model.python({ type: "remote", peer: "A", signal: { type: "call", from: "A", sdp: JSON.stringify({ type: "offer", sdp: "" }) }, ice_servers: [] });
  model.python(ice(1));
  model.python(ice(2));
  await settle();
  const pc = FakePC.all[0];
  assert.deepEqual(pc.candidates, [{ candidate: "c1" }, { candidate: "c2" }]);
  model.python({ type: "accept", peer: "A" });
  await settle();
  const answer = model.sent.find((m) => m.type === "signal");
  assert.equal(/** @type {{signal: {type: string, framing: string}}} */ (answer).signal.type, "answer");
  assert.equal(/** @type {{signal: {framing: string}}} */ (answer).signal.framing, "nbcall/1");
});

test("the answer puts our track on the caller's section of its kind, and a kind not offered is dropped", async () => {
  Object.defineProperty(globalThis, "navigator", { value: { mediaDevices: devices(["audio", "video"]) }, configurable: true });
  const { model } = newPhone();
  model.python({ type: "remote", peer: "A", signal: { type: "call", from: "A", sdp: JSON.stringify({ type: "offer", sdp: "audio:sendrecv" }) } });
  model.python({ type: "accept", peer: "A" });
  await settle();
  const pc = FakePC.all[0];
  assert.deepEqual(pc.transceivers.map((t) => [t.receiver.track.kind, t.direction, t.sender.track?.kind]), [["audio", "sendrecv", "audio"]]);
  const errors = model.sent.filter((m) => m.type === "media").flatMap((m) => /** @type {{name: string}[]} */ (m.errors).map((e) => e.name));
  assert.deepEqual(errors, ["NotOffered"]);
});

test("close stops every track and closes the connection; a step cut short by it is not reported", async () => {
  const { model, phone } = newPhone();
  model.python({ type: "start_call", peer: "B", ice_servers: [] });
  await settle();
  const pc = FakePC.all[0];
  const track = /** @type {FakeTrack} */ (/** @type {unknown} */ (phone.localStream?.getTracks()[0]));
  model.python({ type: "remote", peer: "B", signal: { type: "answer", from: "B", sdp: JSON.stringify({ type: "answer", sdp: "" }) } });
  model.python({ type: "close", peer: "B" });
  await settle();
  assert.equal(pc.closed, true);
  assert.equal(track.stopped, true);
  assert.equal(phone.peers.size, 0);
  assert.equal(phone.shown?.rtc.connectionState, "closed"); // the view still shows how the call ended
  assert.deepEqual(model.sent.filter((m) => m.type === "failure"), []);
  assert.deepEqual(model.sent.filter((m) => m.type === "media").at(-1), {
    type: "media", local: { audio: false, video: false }, remote: { audio: false, video: false }, errors: [],
  });
});

test("a new call to the same peer replaces the old connection, which is closed", async () => {
  const { model, phone } = newPhone({ audio: false, video: false });
  model.python({ type: "start_call", peer: "B", ice_servers: [] });
  model.python({ type: "start_call", peer: "B", ice_servers: [] });
  await settle();
  assert.deepEqual(FakePC.all.map((pc) => pc.closed), [true, false]);
  assert.equal(phone.peers.size, 1);
});

test("close for a peer with no connection does nothing, and is no error", async () => {
  const { model, phone } = newPhone({ audio: false, video: false });
  model.python({ type: "remote", peer: "A", signal: { type: "call", from: "A", sdp: JSON.stringify({ type: "offer", sdp: "" }) } });
  model.python({ type: "accept", peer: "A" });
  await settle();
  assert.equal(model.sent.find((m) => m.type === "signal")?.peer, "A");
  model.python({ type: "close", peer: "A" });
  assert.equal(phone.peers.size, 0);
  assert.equal(FakePC.all[0].closed, true);
  model.python({ type: "close", peer: "A" }); // nothing left to close
  assert.deepEqual(phone.log.filter((e) => e.type === "protocol-error"), []);
});

test("the phone says hello with its page's ID; a page that does not run the calls leaves the WebRTC to the one that does", async () => {
  const { model, phone } = newPhone({ audio: false, video: false, _engine_page: "another tab" });
  await settle();
  assert.deepEqual(model.sent, [{ type: "hello", page: phone.pageId, protocol: FINGERPRINT }]);
  assert.equal(phone.engine, false);
  model.python({ type: "start_call", peer: "B", ice_servers: [] });
  model.python({ type: "send", id: 1, kind: "str" }, [new DataView(new ArrayBuffer(1))]);
  model.python({ type: "log", entry: { t: 1, dir: "out", type: "call", size: 0, detail: {} } });
  await settle();
  assert.equal(FakePC.all.length, 0); // no second client joins the call
  assert.deepEqual(model.sent.filter((m) => m.type !== "hello"), []); // and nothing is reported as failed
  assert.equal(phone.log.length, 1); // the state and log are shown all the same
  model.set("_engine_page", phone.pageId); // the page that ran the calls went away: this one runs them now
  model.python({ type: "start_call", peer: "B", ice_servers: [] });
  await settle();
  assert.equal(FakePC.all.length, 1);
});

test("an unknown message is logged as a protocol-error with its type, and nothing happens", (t) => {
  t.mock.method(console, "warn", () => {});
  const { model, phone } = newPhone();
  model.python({ type: "dial", peer: "B" });
  model.python({ type: "start_call", ice_servers: [] }); // no peer: malformed
  assert.equal(FakePC.all.length, 0);
  const errors = phone.log.filter((e) => e.type === "protocol-error");
  assert.deepEqual(errors.map((e) => /** @type {{type: string}} */ (e.detail).type), ["dial", "start_call"]);
});

test("a send with no call fails with its id; typed text with no call is a failure", async () => {
  const { model, phone } = newPhone();
  model.python({ type: "send", id: 3, kind: "str" });
  phone.sendText("hi");
  await settle();
  assert.deepEqual(model.sent.filter((m) => m.type === "send_failed"), [
    { type: "send_failed", id: 3, message: "the data channel is not open (no call)" },
  ]);
  assert.deepEqual(model.sent.filter((m) => m.type === "failure").map((m) => m.message), [
    "Error: the data channel is not open (no call)",
  ]);
});

// ------------------------------------------------------------------------------------------------- rooms

/** An offer from `peer`'s session `session` (the SDP's o= line), as Python relays it. */
const offerFrom = (/** @type {string} */ peer, /** @type {string} */ session, extra = {}) => ({
  type: "remote",
  peer,
  signal: { type: "call", from: peer, room: "r-1", sdp: JSON.stringify({ type: "offer", sdp: `o=- ${session} 2 IN IP4 127.0.0.1\n` }), ...extra },
  ice_servers: [],
});

/** Open the data channel of `pc` as the browser would once connected. @param {FakePC} pc */
function openChannel(pc) {
  const channel = pc.channels[0];
  channel.readyState = "open";
  channel.onopen?.();
  return channel;
}

test("a room: one link per member, reports name their peer, and close ends only that member's link", async () => {
  const { model, phone } = newPhone({ user_id: "A", audio: false, video: false });
  for (const peer of ["B", "C", "D"]) model.python({ type: "start_call", peer, ice_servers: [] });
  await settle();
  assert.deepEqual([...phone.peers.keys()], ["B", "C", "D"]);
  assert.deepEqual(model.sent.filter((m) => m.type === "signal").map((m) => m.peer), ["B", "C", "D"]);
  FakePC.all.forEach(openChannel);
  await settle();
  assert.deepEqual(model.sent.filter((m) => m.type === "channel").map((m) => m.peer), ["B", "C", "D"]);
  // A message from C reaches Python with C as its peer, and the chat row names C.
  FakePC.all[1].channels[0].onmessage?.({ data: "hello from C" });
  await settle();
  assert.equal(model.sent.find((m) => m.type === "message")?.peer, "C");
  assert.equal(phone.chat.at(-1)?.peer, "C");
  model.python({ type: "close", peer: "C" });
  assert.deepEqual(FakePC.all.map((pc) => pc.closed), [false, true, false]);
  assert.deepEqual([...phone.peers.keys()], ["B", "D"]);
});

test("send with `to` goes on that member's channel only; without it, on every open channel", async () => {
  const { model, phone } = newPhone({ user_id: "A", audio: false, video: false });
  for (const peer of ["B", "C", "D"]) model.python({ type: "start_call", peer, ice_servers: [] });
  await settle();
  const [b, c] = FakePC.all.slice(0, 2).map(openChannel); // D is still connecting
  model.python({ type: "send", id: 1, kind: "str", to: "C" });
  await settle();
  assert.deepEqual([b.sent.length, c.sent.length], [0, 1]);
  model.python({ type: "send", id: 2, kind: "str" });
  await settle();
  assert.deepEqual([b.sent.length, c.sent.length, FakePC.all[2].channels[0].sent.length], [1, 2, 0]);
  assert.deepEqual(model.sent.filter((m) => m.type === "send_failed"), []); // D connecting is no failure
  assert.deepEqual(phone.chat.map((e) => [e.dir, e.peer]), [["out", "C"], ["out", ""]]);
  // To a member whose channel is not open: that send fails, with its id.
  model.python({ type: "send", id: 3, kind: "str", to: "D" });
  model.python({ type: "send", id: 4, kind: "str", to: "E" });
  await settle();
  assert.deepEqual(model.sent.filter((m) => m.type === "send_failed").map((m) => [m.id, m.message]), [
    [3, "the data channel is not open (connecting)"],
    [4, "no connection to E"],
  ]);
});

test("one camera-and-microphone stream serves every link, and stops when the last link closes", async () => {
  let opened = 0;
  const gum = devices(["audio", "video"]);
  const counting = { getUserMedia: (/** @type {Record<string, unknown>} */ c) => (opened++, gum.getUserMedia(c)) };
  Object.defineProperty(globalThis, "navigator", { value: { mediaDevices: counting }, configurable: true });
  const { model, phone } = newPhone({ user_id: "A", camera_on: true });
  model.python({ type: "start_call", peer: "B", ice_servers: [] });
  model.python({ type: "start_call", peer: "C", ice_servers: [] });
  model.python(offerFrom("D", "7"));
  model.python({ type: "accept", peer: "D" });
  await settle();
  assert.equal(opened, 1);
  const stream = phone.localStream;
  const tracks = /** @type {FakeTrack[]} */ (/** @type {unknown} */ (stream?.getTracks()));
  assert.deepEqual(tracks.map((t) => t.kind), ["audio", "video"]);
  // B and C send the very same tracks.
  const sent = FakePC.all.slice(0, 2).map((pc) => pc.getSenders().map((s) => s.track));
  assert.deepEqual(sent[0], tracks);
  assert.deepEqual(sent[1], tracks);
  // mute applies to every link: the one shared track.
  model.set("mic_on", false);
  assert.equal(tracks[0].enabled, false);
  model.python({ type: "close", peer: "B" });
  model.python({ type: "close", peer: "D" });
  assert.deepEqual(tracks.map((t) => t.stopped), [false, false]); // C still sends them
  model.python({ type: "close", peer: "C" });
  assert.deepEqual(tracks.map((t) => t.stopped), [true, true]);
  assert.equal(phone.localStream, null);
  // A new call asks for the devices again.
  model.python({ type: "start_call", peer: "B", ice_servers: [] });
  await settle();
  assert.equal(opened, 2);
});

/**
 * Phone `userId`'s call to B, answered (the link is up), then its own renegotiation's offer: the glare tests'
 * start, before B's offer crosses it.
 * @param {string} userId
 */
async function renegotiatingWithB(userId) {
  const made = newPhone({ user_id: userId, audio: false, video: false });
  made.model.python({ type: "start_call", peer: "B", ice_servers: [] });
  await settle();
  const pc = FakePC.all[0];
  made.model.python({ type: "remote", peer: "B", signal: { type: "answer", from: "B", room: "r-1", sdp: JSON.stringify({ type: "answer", sdp: "o=- 9 2 IN IP4 x\n" }) } });
  await settle();
  pc.onnegotiationneeded?.();
  await settle();
  return { ...made, pc };
}

test("glare on a link that is up: the polite side (smaller ID) rolls back and answers", async () => {
  const { model, pc } = await renegotiatingWithB("A");
  assert.equal(pc.signalingState, "have-local-offer");
  model.python(offerFrom("B", "9"));
  model.python({ type: "accept", peer: "B" });
  await settle();
  assert.equal(FakePC.all.length, 1, "the same connection, renegotiated");
  assert.equal(pc.rolledBack, 1);
  const signals = model.sent.filter((m) => m.type === "signal").map((m) => /** @type {{type: string}} */ (m.signal).type);
  assert.deepEqual(signals, ["call", "call", "answer"]);
  assert.equal(pc.signalingState, "stable");
});

test("glare on a link that is up: the impolite side ignores the offer, and its `accept`, and keeps its own", async () => {
  const { model, phone, pc } = await renegotiatingWithB("C");
  model.python(offerFrom("B", "9"));
  model.python({ type: "accept", peer: "B" });
  model.python({ type: "remote", peer: "B", signal: { type: "ice", from: "B", room: "r-1", candidate: JSON.stringify({ candidate: "late" }) } });
  await settle();
  assert.equal(pc.rolledBack, 0);
  assert.equal(pc.signalingState, "have-local-offer");
  assert.deepEqual(model.sent.filter((m) => m.type === "failure"), []);
  assert.ok(phone.log.some((e) => e.type === "offer-ignored"));
  const signals = model.sent.filter((m) => m.type === "signal").map((m) => /** @type {{type: string}} */ (m.signal).type);
  assert.deepEqual(signals, ["call", "call"]);
});

test("a peer that says it is never polite (a Python peer) makes the browser polite, whatever the IDs", async () => {
  const { model } = newPhone({ user_id: "Z", audio: false, video: false });
  model.python({ type: "start_call", peer: "B", ice_servers: [] }); // Z > B: impolite by ID
  await settle();
  const pc = FakePC.all[0];
  model.python(offerFrom("B", "5", { polite: false }));
  model.python({ type: "accept", peer: "B" });
  await settle();
  assert.equal(pc.rolledBack, 1);
  const last = /** @type {{signal: {type: string}}} */ (model.sent.filter((m) => m.type === "signal").at(-1));
  assert.equal(last.signal.type, "answer");
});

test("an offer from a new session of the peer (it reconnected) replaces the link; from the same one renegotiates", async () => {
  const { model, phone } = newPhone({ user_id: "A", audio: false, video: false });
  model.python(offerFrom("B", "1"));
  model.python({ type: "accept", peer: "B" });
  await settle();
  model.python(offerFrom("B", "1"));
  model.python({ type: "accept", peer: "B" });
  await settle();
  assert.equal(FakePC.all.length, 1);
  model.python(offerFrom("B", "2"));
  await settle();
  assert.deepEqual(FakePC.all.map((pc) => pc.closed), [true, false]);
  assert.equal(phone.peers.get("B")?.pc, FakePC.all[1]);
});

/**
 * Phone A in a call with B, an nbcall end that takes the "length" extension, its data channel open.
 * @param {Record<string, unknown>} [traits]
 */
async function framedCall(traits = {}) {
  const { model, phone } = newPhone({ user_id: "A", audio: false, video: false, ...traits });
  model.python({ type: "start_call", peer: "B", ice_servers: [] });
  await settle();
  const answer = { type: "answer", from: "B", sdp: JSON.stringify({ type: "answer", sdp: "" }), framing: "nbcall/1", framing_ext: ["length"] };
  model.python({ type: "remote", peer: "B", signal: answer });
  await settle();
  return { model, phone, channel: openChannel(FakePC.all[0]) };
}

test("a file arriving is one chat row, its progress reaches Python, and the verdict sent back names it", async () => {
  const MiB = 1024 * 1024;
  const json = (/** @type {unknown} */ v) => new TextEncoder().encode(JSON.stringify(v));
  const { model, phone, channel } = await framedCall();
  /** @param {"json" | "bytes"} kind @param {Uint8Array} payload */
  const deliver = (kind, payload) => {
    for (const frame of encodeFrames(kind, payload, 64 * 1024, true)) channel.onmessage?.({ data: frame.slice().buffer });
  };
  deliver("json", json({ nbcall_file: "start", id: "f1", name: "a.bin", size: 2 * MiB }));
  deliver("bytes", new Uint8Array(MiB));
  deliver("bytes", new Uint8Array(MiB));
  deliver("json", json({ nbcall_file: "end", id: "f1", sha256: "00" }));
  await settle();
  assert.deepEqual(phone.chat.map((e) => [e.dir, e.kind, e.text]), [["in", "file", "a.bin (2.0 MiB)"]]);
  const reports = model.sent.filter((m) => m.type === "progress");
  assert.deepEqual(reports.at(-1) && [reports[0].name, reports.at(-1)?.done, reports.at(-1)?.total], ["a.bin", 2 * MiB, 2 * MiB]);
  assert.equal(phone.transfers.current, null); // nothing under way is shown any more
  // Every message still reaches Python: the file's messages are Python's to check.
  assert.equal(model.sent.filter((m) => m.type === "message").length, 4);
  const verdict = json({ nbcall_file: "verdict", id: "f1", ok: true, sha256: "00" });
  model.python({ type: "send", id: 1, kind: "json", to: "B" }, [new DataView(verdict.buffer)]);
  await settle();
  assert.deepEqual(phone.chat.at(-1) && [phone.chat.at(-1)?.dir, phone.chat.at(-1)?.text], ["out", "a.bin: received whole, sha256 checked"]);
});

test("a large message goes to Python in parts while it arrives, first part marked, and shows whole in the chat", async () => {
  const settings = { max_log: 500, max_chat: 200, stats_interval_ms: 1000, stats_history: 60, frame_size: 65536, high_water: 1 << 20, part_size: 100_000, max_tiles: 9 };
  const { model, phone, channel } = await framedCall({ _settings: settings });
  const payload = new Uint8Array(300_000).map((_, i) => i % 251);
  const frames = [...encodeFrames("bytes", payload, 65536, true)];
  for (const frame of frames.slice(0, -1)) channel.onmessage?.({ data: frame.slice().buffer });
  await settle();
  // Two parts went before the last frame came: the page holds at most a part and a frame of it.
  const parts = () => model.sent.filter((m) => m.type === "message");
  assert.deepEqual(parts().map((m) => [m.first, m.last]), [[true, false], [false, false]]);
  assert.equal(phone.chat.length, 0);
  channel.onmessage?.({ data: frames.at(-1)?.slice().buffer });
  await settle();
  assert.deepEqual(parts().map((m) => [m.first, m.last]), [[true, false], [false, false], [false, true]]);
  assert.deepEqual(model.buffers.flat(), [131_070, 131_070, 37_860]);
  assert.equal(phone.chat.at(-1)?.text, "300000 bytes: 00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f …");
  assert.equal(phone.chat.at(-1)?.size, 300_000);
});

/** The payloads of the messages framed on a fake channel. @param {unknown[]} sent */
function decoded(sent) {
  const frames = new FrameDecoder();
  return sent.flatMap((data) => {
    const message = frames.push(new Uint8Array(/** @type {Uint8Array} */ (data)));
    return message ? [message.payload] : [];
  });
}

test("a message Python sends in parts starts on the channel with its first part; `sent` says what the channel took", async () => {
  const { model, channel } = await framedCall();
  const payload = new Uint8Array(300_000).map((_, i) => i % 251);
  const part = (/** @type {number} */ n) => new DataView(payload.buffer, n * 100_000, 100_000);
  model.python({ type: "send", id: 7, kind: "bytes", size: payload.length }, [part(0)]);
  await settle();
  // The first part is on the channel before the rest came, and Python may send more.
  const framedBytes = () => /** @type {Uint8Array[]} */ (channel.sent).reduce((n, f) => n + f.length - 1, 0);
  assert.ok(framedBytes() >= 65_535, `${framedBytes()} bytes framed`);
  assert.deepEqual(model.sent.filter((m) => m.type === "sent"), [{ type: "sent", id: 7, done: 100_000 }]);
  model.python({ type: "send_part", id: 7 }, [part(1)]);
  model.python({ type: "send_part", id: 7 }, [part(2)]);
  await settle();
  assert.deepEqual(decoded(channel.sent), [payload]);
  assert.deepEqual(model.sent.filter((m) => m.type === "sent").map((m) => m.done), [100_000, 200_000, 300_000]);
  assert.deepEqual(model.sent.filter((m) => m.type === "send_failed"), []);
});

test("a message in parts to a room goes on when one member's channel closes, which fails for that member", async () => {
  const { model, phone } = newPhone({ user_id: "A", audio: false, video: false });
  for (const peer of ["B", "C"]) model.python({ type: "start_call", peer, ice_servers: [] });
  await settle();
  const answer = { sdp: JSON.stringify({ type: "answer", sdp: "" }), framing: "nbcall/1", framing_ext: ["length"] };
  for (const peer of ["B", "C"]) model.python({ type: "remote", peer, signal: { type: "answer", from: peer, ...answer } });
  await settle();
  const [b, c] = FakePC.all.map(openChannel);
  const payload = new Uint8Array(30_000).map((_, i) => i % 7);
  const part = (/** @type {number} */ n) => new DataView(payload.buffer, n * 10_000, 10_000);
  model.python({ type: "send", id: 1, kind: "bytes", size: payload.length }, [part(0)]);
  await settle();
  c.readyState = "closed"; // C hangs up before the next part
  model.python({ type: "send_part", id: 1 }, [part(1)]);
  model.python({ type: "send_part", id: 1 }, [part(2)]);
  await settle();
  assert.deepEqual(decoded(b.sent), [payload]);
  assert.deepEqual(model.sent.filter((m) => m.type === "send_failed").map((m) => [m.id, m.message]), [
    [1, "the data channel closed while sending"],
  ]);
  assert.equal(model.sent.filter((m) => m.type === "sent").at(-1)?.done, 30_000);
  assert.equal(phone.outgoing.size, 0);
});

/** The first frames of a message of 200,000 bytes, framed for the channel of framedCall(). @param {number} count */
function cutFrames(count) {
  return [...encodeFrames("bytes", new Uint8Array(200_000), 65536, true)].slice(0, count);
}

test("a message cut off by its channel closing is said dropped to Python", async () => {
  const { model, channel } = await framedCall();
  cutFrames(2).forEach((frame) => channel.onmessage?.({ data: frame.slice().buffer }));
  /** @type {{onclose?: () => void}} */ (channel).onclose?.(); // the peer went away
  await settle();
  const problems = model.sent.filter((m) => m.type === "dropped").map((m) => m.problem);
  assert.deepEqual(problems, ["dropped a message cut off after 65535 of its 200000 bytes: the data channel closed"]);
});

test("a message cut off by our hang-up is said dropped to Python", async () => {
  const { model, channel } = await framedCall();
  cutFrames(3).forEach((frame) => channel.onmessage?.({ data: frame.slice().buffer }));
  model.python({ type: "close", peer: "B" });
  /** @type {{onclose?: () => void}} */ (channel).onclose?.(); // after our own close: said once, not twice
  await settle();
  const problems = model.sent.filter((m) => m.type === "dropped").map((m) => m.problem);
  assert.deepEqual(problems, ["dropped a message cut off after 131070 of its 200000 bytes: the call ended"]);
});

test("messages relayed through the server (an SFU room's directed sends) show as chat rows, a verdict as its file's", async () => {
  const json = (/** @type {unknown} */ v) => new TextEncoder().encode(JSON.stringify(v));
  const { model, phone } = newPhone({ user_id: "A", audio: false, video: false, room: "r1" });
  // A's file went to the room on the SFU's data channel: its row names it (here as if sent).
  phone.addChat("out", "json", json({}), 2, "", phone.transfers.message("out", "", "json", 60, json({ nbcall_file: "start", id: "f1", name: "a.bin", size: 10 })));
  const relay = (/** @type {"in" | "out"} */ dir, /** @type {string} */ peer, /** @type {Uint8Array} */ head, size = head.length) =>
    model.python({ type: "relayed", dir, peer, kind: "json", size }, [new DataView(head.buffer)]);
  relay("in", "B", json({ nbcall_file: "verdict", id: "f1", ok: true, sha256: "00" }));
  relay("in", "R", json({ nbcall_file: "verdict", id: "f1", ok: false, error: "a.bin exists" }));
  relay("out", "B", json({ n: 1 }));
  await settle();
  assert.deepEqual(phone.chat.slice(1).map((e) => [e.dir, e.peer, e.kind, e.text]), [
    ["in", "B", "file", "a.bin: received whole, sha256 checked"],
    ["in", "R", "file", "a.bin: failed: a.bin exists"],
    ["out", "B", "json", '{"n":1}'],
  ]);
  // Another tab showing the phone sees no data channel's messages, so none of these either.
  const other = newPhone({ user_id: "A", _engine_page: "another tab" });
  other.model.python({ type: "relayed", dir: "in", peer: "B", kind: "str", size: 2 }, [new DataView(json("hi").buffer)]);
  await settle();
  assert.deepEqual(other.phone.chat, []);
});
