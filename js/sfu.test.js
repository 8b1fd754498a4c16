// Unit tests of a phone's SFU links without a browser (node --test): a stand-in RTCPeerConnection, and frames
// fed to the feeds' channels as Janus would relay them.
import assert from "node:assert/strict";
import { test } from "node:test";
import { ACK, SYNC, ackFrame, control, encodeFrames, syncFrame } from "./framing.js";
import { SfuLink } from "./sfu.js";

class FakeChannel {
  constructor(label = "nbcall") {
    this.label = label;
    this.readyState = "open";
    this.bufferedAmount = 0;
    this.bufferedAmountLowThreshold = 0;
    /** @type {Uint8Array[]} */
    this.sent = [];
    /** @type {((e: {data: ArrayBuffer}) => void) | null} */
    this.onmessage = null;
  }
  /** @param {Uint8Array} data */
  send(data) {
    this.sent.push(data);
  }
  addEventListener() {}
  removeEventListener() {}
}

class FakePeerConnection {
  constructor() {
    this.channels = /** @type {FakeChannel[]} */ ([]);
  }
  /** @param {string} label */
  createDataChannel(label) {
    const channel = new FakeChannel(label);
    this.channels.push(channel);
    return channel;
  }
  addEventListener() {}
  getSenders() {
    return [];
  }
  close() {}
}
// @ts-ignore: a stand-in for the browser's
globalThis.RTCPeerConnection = FakePeerConnection;

/** A link whose publisher channel is open, with the members B (feed 11) and C (feed 12). */
function link() {
  /** @type {{type: string, fields: any}[]} */
  const told = [];
  const received = /** @type {[string, string, Uint8Array][]} */ ([]);
  const host = /** @type {any} */ ({
    tell: (/** @type {string} */ type, /** @type {any} */ fields) => told.push({ type, fields }),
    event: () => {},
    emit: () => {},
    settings: () => ({ high_water: 1 << 20 }),
    userId: () => "A",
    received: (/** @type {string} */ member, /** @type {string} */ kind, /** @type {Uint8Array} */ payload) =>
      received.push([member, kind, payload]),
    partial: () => {},
    fail: (/** @type {string} */ _peer, /** @type {unknown} */ err) => {
      throw err;
    },
  });
  const sfu = new SfuLink({}, host, (video) => video);
  const channel = new FakeChannel();
  sfu.channel = /** @type {any} */ (channel);
  sfu.updateFeeds({ 11: "B", 12: "C" });
  return { sfu, channel, told, received };
}

/** @param {Uint8Array} frame */
const copy = (frame) => new Uint8Array(frame);

test("a member connects once its feed brought something and it said it receives us", () => {
  const { sfu, channel, told } = link();
  sfu.receive("11", copy(ackFrame(0, ""))); // B's hello
  assert.deepEqual(control(channel.sent[0]), { type: ACK, sequence: 0, sender: "B" }); // "I receive you"
  assert.deepEqual(told.filter((t) => t.type === "channel"), []);
  sfu.receive("11", copy(ackFrame(0, "A"))); // B receives us
  assert.deepEqual(
    told.filter((t) => t.type === "channel").map((t) => [t.fields.peer, t.fields.state]),
    [["B", "open"]],
  );
  // Its first ACK naming us is answered, in case B subscribed to us after our first one.
  assert.deepEqual(control(channel.sent.at(-1) ?? new Uint8Array()), { type: ACK, sequence: 0, sender: "B" });
  sfu.updateFeeds({ 12: "C" }); // B's feed left
  assert.deepEqual(told.filter((t) => t.type === "channel").at(-1)?.fields.state, "closed");
});

test("each hello is answered, so that an answer Janus dropped is made good by the next", () => {
  const { sfu, channel } = link();
  const answers = () => channel.sent.filter((f) => control(f)?.sender === "C").length;
  sfu.receive("12", copy(ackFrame(0, ""))); // C's hello: the first thing on its feed
  sfu.receive("12", copy(ackFrame(0, ""))); // again: it has not heard us say "I receive you"
  sfu.receive("12", copy(ackFrame(0, "")));
  assert.equal(answers(), 3);
  sfu.receive("12", copy(ackFrame(0, "B"))); // an ACK naming another member is no hello
  assert.equal(answers(), 3);
});

test("a SYNC is answered at once with an ACK naming its sender, and an ACK to us frees the sender's window", () => {
  const { sfu, channel } = link();
  sfu.receive("12", copy(syncFrame(7)));
  assert.deepEqual(control(channel.sent.at(-1) ?? new Uint8Array()), { type: ACK, sequence: 7, sender: "C" });
  sfu.window.sent(sfu.window.every, ["C"], 0);
  assert.equal(sfu.window.syncs.size, 1);
  sfu.receive("12", copy(ackFrame(1, "A")));
  assert.equal(sfu.window.syncs.size, 0);
  sfu.receive("12", copy(ackFrame(5, "B"))); // an ACK for another member is none of ours
  assert.equal(control(channel.sent.at(-1) ?? new Uint8Array())?.type, ACK);
});

test("messages through the SFU arrive whole, named by feed; a late subscriber drops the tail it came in on", () => {
  const { sfu, received } = link();
  const big = new Uint8Array(200_000).map((_, i) => i % 251);
  const frames = [...encodeFrames("bytes", big, 65535, true, true)];
  for (const frame of frames.slice(2)) sfu.receive("12", copy(frame)); // came in mid-message
  assert.equal(received.length, 0);
  for (const frame of encodeFrames("str", new TextEncoder().encode("hi"), 65535, true, true)) sfu.receive("12", copy(frame));
  for (const frame of frames) sfu.receive("11", copy(frame));
  assert.deepEqual(received.map(([m, k, p]) => [m, k, p.length]), [["C", "str", 2], ["B", "bytes", 200_000]]);
  assert.deepEqual(received[1][2], big);
  assert.ok(frames.every((f) => f.length <= 65535));
});

test("a send is cut into frames of at most 65,535 bytes, the first marked, with a SYNC after each window", async () => {
  const { sfu, channel } = link();
  sfu.window.every = 100_000;
  const sent = sfu.send("bytes", 150_000, [new Uint8Array(100_000), new Uint8Array(50_000)]); // in two parts, as Python sends
  await sent;
  const data = channel.sent.filter((f) => f[0] !== SYNC);
  assert.ok(data.every((f) => f.length <= 65535));
  assert.equal(data[0][0] & 0x40, 0x40);
  assert.equal(channel.sent.filter((f) => f[0] === SYNC).length, 1);
});
