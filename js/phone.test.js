// The phone and its peer links (node --test) against stand-ins for RTCPeerConnection, MediaStream and the
// model: negotiation as the browser does it, `peer` on every message to Python, today's Python half without
// `peer`, and closing that leaves nothing running.
import assert from "node:assert/strict";
import { afterEach, beforeEach, test } from "node:test";
import { BrowserPhone } from "./phone.js";

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
    /** @type {{label: string}[]} */
    this.channels = [];
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
    const channel = { label, readyState: "connecting" };
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
  /** @param {{type: string, sdp: string}} d */
  async setLocalDescription(d) {
    if (this.closed) throw new Error("InvalidStateError: closed");
    this.localDescription = d;
    this.setSignaling(d.type === "offer" ? "have-local-offer" : "stable");
  }
  /** @param {{type: string, sdp: string}} d */
  async setRemoteDescription(d) {
    if (this.closed) throw new Error("InvalidStateError: closed");
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
    /** @param {string} event @param {Function} cb */
    on(event, cb) {
      if (!listeners.has(event)) listeners.set(event, new Set());
      listeners.get(event)?.add(cb);
    },
    /** @param {string} event @param {Function} cb */
    off(event, cb) {
      listeners.get(event)?.delete(cb);
    },
    /** @param {Record<string, unknown>} content */
    send(content) {
      if (content.type === "batch") sent.push(.../** @type {Record<string, unknown>[]} */ (content.messages));
      else sent.push(content);
    },
    /** @param {unknown} content */
    python(content) {
      for (const cb of listeners.get("msg:custom") ?? []) cb(content, []);
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
    signal: { type: "call", sdp: JSON.stringify({ type: "offer", sdp: "audio:sendrecv video:recvonly" }), framing: "nbcall/1" },
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
