// Data-channel sending and receiving (node --test, with a stand-in channel): framed or plain, backpressure,
// reassembly, and the parts Python receives.
import assert from "node:assert/strict";
import { test } from "node:test";
import { parts, receiver, sendMessage } from "./channel.js";
import { encodeFrames } from "./framing.js";

/** A channel stand-in that records what is sent and lets a test drain its queue. */
class FakeChannel extends EventTarget {
  constructor() {
    super();
    /** @type {RTCDataChannelState} */
    this.readyState = "open";
    this.bufferedAmount = 0;
    this.bufferedAmountLowThreshold = 0;
    /** @type {(string | Uint8Array)[]} */
    this.sent = [];
  }

  /** @param {string | Uint8Array} data */
  send(data) {
    this.sent.push(data);
    this.bufferedAmount += typeof data === "string" ? data.length : data.length;
  }

  drain() {
    this.bufferedAmount = 0;
    this.dispatchEvent(new Event("bufferedamountlow"));
  }
}

const bytes = (/** @type {number} */ n) => new Uint8Array(n).fill(7);
const LIMITS = { frameSize: 1000, highWater: 4000 };

test("a plain peer gets text frames for str and json, binary for bytes", async () => {
  const ch = new FakeChannel();
  await sendMessage(ch, { framed: false }, "str", new TextEncoder().encode("hé"), LIMITS);
  await sendMessage(ch, { framed: false }, "json", new TextEncoder().encode('{"a":1}'), LIMITS);
  await sendMessage(ch, { framed: false }, "bytes", bytes(3), LIMITS);
  assert.deepEqual(ch.sent, ["hé", '{"a":1}', bytes(3)]);
});

test("an nbcall peer gets frames no larger than the frame size or the transport's maximum", async () => {
  const ch = new FakeChannel();
  await sendMessage(ch, { framed: true }, "bytes", bytes(2500), LIMITS);
  assert.deepEqual(ch.sent.map((f) => f.length), [1000, 1000, 503]);
  const small = new FakeChannel();
  await sendMessage(small, { framed: true }, "bytes", bytes(2500), { ...LIMITS, maxMessageSize: 500 });
  assert.ok(small.sent.every((f) => f.length <= 500));
});

test("sending waits while more than the high-water mark is queued, and goes on once it drains", async () => {
  const ch = new FakeChannel();
  let done = false;
  const sending = sendMessage(ch, { framed: true }, "bytes", bytes(10_000), LIMITS).then(() => (done = true));
  await new Promise((r) => setTimeout(r, 10));
  assert.equal(ch.sent.length, 5); // 5000 bytes queued > 4000: waiting
  assert.equal(ch.bufferedAmountLowThreshold, 2000);
  assert.equal(done, false);
  ch.drain();
  await new Promise((r) => setTimeout(r, 10));
  ch.drain();
  await sending;
  assert.equal(ch.sent.length, 11);
});

test("a channel that closes while sending waits fails the send", async () => {
  const ch = new FakeChannel();
  const sending = sendMessage(ch, { framed: true }, "bytes", bytes(10_000), LIMITS);
  await new Promise((r) => setTimeout(r, 10));
  ch.dispatchEvent(new Event("close"));
  await assert.rejects(sending, /closed while sending/);
});

test("a channel that is not open refuses to send, saying its state", async () => {
  const ch = new FakeChannel();
  ch.readyState = "connecting";
  await assert.rejects(sendMessage(ch, { framed: true }, "str", bytes(1), LIMITS), /not open \(connecting\)/);
  await assert.rejects(sendMessage(null, { framed: true }, "str", bytes(1), LIMITS), /not open \(no call\)/);
});

test("received frames become whole messages; text frames and unframed binary stay as they are", () => {
  /** @type {[string, number][]} */
  const got = [];
  let framed = true;
  const receive = receiver(() => framed, (kind, payload) => got.push([kind, payload.length]));
  for (const frame of encodeFrames("json", bytes(2500), 1000)) receive(frame.slice().buffer);
  receive("plain text");
  framed = false;
  receive(bytes(4).buffer);
  assert.deepEqual(got, [["json", 2500], ["str", 10], ["bytes", 4]]);
});

test("progress: a send reports the bytes that left the queue, ending at the whole payload", async () => {
  const ch = new FakeChannel();
  /** @type {number[]} */
  const seen = [];
  const sending = sendMessage(ch, { framed: true, announceLength: true }, "bytes", bytes(10_000), LIMITS, (d) => seen.push(d));
  await Promise.resolve();
  assert.equal(/** @type {Uint8Array} */ (ch.sent[0])[0], 4); // the LENGTH frame goes first
  assert.ok(seen.length > 0 && !seen.some((d) => d !== 0), "nothing left the queue yet");
  while (seen.at(-1) !== 10_000) {
    ch.drain();
    await new Promise((r) => setTimeout(r, 0));
  }
  await sending;
  assert.ok(seen.every((d, i) => i === 0 || d >= seen[i - 1]), `never goes back: ${seen}`);
});

test("progress: a message still arriving is reported with its announced length", () => {
  /** @type {[number, number | null][]} */
  const partial = [];
  const receive = receiver(() => true, () => {}, (done, total) => partial.push([done, total]));
  for (const frame of encodeFrames("bytes", bytes(2500), 1000, true)) receive(frame.slice().buffer);
  assert.deepEqual(partial, [[999, 2500], [1998, 2500]]);
  partial.length = 0;
  for (const frame of encodeFrames("bytes", bytes(2500), 1000)) receive(frame.slice().buffer);
  assert.deepEqual(partial, [[999, null], [1998, null]]);
});

test("a payload reaches Python in standalone parts of at most part_size bytes", () => {
  const payload = new Uint8Array(new ArrayBuffer(20), 5, 10).fill(1);
  const out = parts(payload, 4);
  assert.deepEqual(out.map((b) => b.byteLength), [4, 4, 2]);
  assert.ok(out.every((b) => b instanceof ArrayBuffer));
  assert.deepEqual(parts(new Uint8Array(0), 4).map((b) => b.byteLength), [0]);
  assert.deepEqual(parts(payload, 100).map((b) => b.byteLength), [10]);
});

test("a payload that is a whole buffer of its own and fits one part goes as that buffer, uncopied", () => {
  const joined = new Uint8Array(8).fill(7);
  const [part] = parts(joined, 8);
  assert.equal(part, joined.buffer);
  assert.notEqual(parts(joined, 4)[0], joined.buffer); // cut in two: standalone copies
});

test("a message over maxSize is refused, framed or not, and the next one is received", () => {
  /** @type {[string, number][]} */
  const got = [];
  let framed = false;
  const receive = receiver(() => framed, (kind, payload) => got.push([kind, payload.length]), undefined, () => 8);
  assert.throws(() => receive(new ArrayBuffer(9)), /9 bytes is more than max_receive_size \(8\)/);
  assert.throws(() => receive("nine char"), /more than max_receive_size/);
  receive(new ArrayBuffer(8));
  framed = true;
  const frames = [...encodeFrames("bytes", new Uint8Array(20), 5)];
  assert.throws(() => frames.forEach((f) => receive(f.slice().buffer)), /more than max_receive_size/);
  frames.slice(3).forEach((f) => receive(f.slice().buffer)); // the rest of it, dropped quietly
  receive(new Uint8Array([1, 104, 105]).buffer);
  assert.deepEqual(got, [["bytes", 8], ["str", 2]]);
});

test("a message cut off is never dropped in silence: by the next one's first frame, or by the channel closing", () => {
  /** @type {[string, number][]} */
  const got = [];
  /** @type {string[]} */
  const dropped = [];
  const receive = receiver(() => true, (kind, payload) => got.push([kind, payload.length]), undefined, undefined, (p) => dropped.push(p));
  assert.equal(receive.unfinished(), null);
  const cut = [...encodeFrames("bytes", bytes(2500), 1000, true, true)].slice(0, 2); // its LENGTH and first frame
  cut.forEach((f) => receive(f.slice().buffer));
  for (const frame of encodeFrames("str", bytes(5), 1000, false, true)) receive(frame.slice().buffer);
  assert.deepEqual(got, [["str", 5]]);
  assert.deepEqual(dropped, ["dropped a message cut off after 999 of its 2500 bytes: the next one began"]);
  [...encodeFrames("json", bytes(1500), 1000)].slice(0, 1).forEach((f) => receive(f.slice().buffer));
  assert.equal(receive.unfinished(), "dropped a message cut off after 999 bytes");
});
