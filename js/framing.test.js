// Unit tests of the data-channel framing (node --test): what goes in as one message comes out as one.
import assert from "node:assert/strict";
import { test } from "node:test";
import { ACK, AckWindow, FIRST, FrameDecoder, FrameWriter, MessageTooLarge, SYNC, ackFrame, control, encodeFrames } from "./framing.js";

/** @param {number} n */
function pattern(n) {
  const bytes = new Uint8Array(n);
  for (let i = 0; i < n; i++) bytes[i] = (i * 31 + 7) & 0xff;
  return bytes;
}

test("a small message is one frame with its kind byte", () => {
  const frames = [...encodeFrames("str", new TextEncoder().encode("hi"), 1024)];
  assert.equal(frames.length, 1);
  assert.deepEqual([...frames[0]], [1, 104, 105]);
});

test("an empty message still travels, as a frame with only the kind byte", () => {
  const frames = [...encodeFrames("bytes", new Uint8Array(0), 1024)];
  assert.deepEqual(frames.map((f) => [...f]), [[2]]);
  const message = new FrameDecoder().push(frames[0]);
  assert.equal(message?.kind, "bytes");
  assert.equal(message?.payload.length, 0);
});

test("a large message is split into frames no larger than the limit and reassembled exactly", () => {
  const payload = pattern(1_000_003);
  const frames = [...encodeFrames("json", payload, 65536)];
  assert.equal(frames.length, Math.ceil(payload.length / 65535));
  assert.ok(frames.every((f) => f.length <= 65536));
  const decoder = new FrameDecoder();
  const results = frames.map((f) => decoder.push(f));
  assert.ok(results.slice(0, -1).every((r) => r === null));
  const last = results.at(-1);
  assert.equal(last?.kind, "json");
  assert.deepEqual(last?.payload, payload);
});

test("messages that follow each other decode one by one, in order", () => {
  const decoder = new FrameDecoder();
  const out = [];
  /** @type {[import("./framing.js").Kind, number][]} */
  const messages = [["bytes", 70000], ["str", 3], ["bytes", 131070]];
  for (const [kind, n] of messages) {
    for (const frame of encodeFrames(kind, pattern(n), 65536)) {
      const m = decoder.push(frame);
      if (m) out.push([m.kind, m.payload.length]);
    }
  }
  assert.deepEqual(out, [["bytes", 70000], ["str", 3], ["bytes", 131070]]);
});

test("malformed frames are refused with a clear error", () => {
  assert.throws(() => new FrameDecoder().push(new Uint8Array(0)), /empty frame/);
  assert.throws(() => new FrameDecoder().push(new Uint8Array([9, 1])), /unknown message kind byte 9/);
  const decoder = new FrameDecoder();
  decoder.push(new Uint8Array([0x81, 65]));
  assert.throws(() => decoder.push(new Uint8Array([2, 66])), /inside a message of kind 1/);
  assert.equal(decoder.push(new Uint8Array([1, 67]))?.payload[0], 67); // the next message is intact
  assert.throws(() => [...encodeFrames(/** @type {any} */ ("xml"), new Uint8Array(1), 100)], /unknown message kind/);
});

test("extension length: a multi-frame message is announced, and the decoder knows how much is left", () => {
  const payload = pattern(200_000);
  const frames = [...encodeFrames("bytes", payload, 65536, true)];
  assert.deepEqual([...frames[0]], [4, 0, 0, 0, 0, 0, 3, 13, 64]); // 200000 = 0x030d40
  assert.equal(frames.length, 1 + Math.ceil(payload.length / 65535));
  const decoder = new FrameDecoder();
  assert.equal(decoder.push(frames[0]), null);
  assert.equal(decoder.push(frames[1]), null);
  assert.deepEqual([decoder.pending, decoder.expected], [65535, 200_000]);
  const last = frames.slice(2).map((f) => decoder.push(f)).at(-1);
  assert.deepEqual(last?.payload, payload);
  assert.deepEqual([decoder.pending, decoder.expected], [0, null]);
  // A one-frame message needs no announcement.
  assert.equal([...encodeFrames("str", pattern(10), 65536, true)].length, 1);
});

test("extension length: a misplaced or malformed length frame is refused and the next message decodes", () => {
  const decoder = new FrameDecoder();
  decoder.push(new Uint8Array([0x82, 1]));
  assert.throws(() => decoder.push(new Uint8Array([4, 0, 0, 0, 0, 0, 0, 0, 9])), /length frame inside a message/);
  assert.throws(() => decoder.push(new Uint8Array([4, 0, 1])), /length frame of 3 bytes/);
  assert.equal(decoder.push(new Uint8Array([2, 7]))?.payload[0], 7);
});

test("a message over maxSize is refused once, counted or announced, and the next message decodes", () => {
  const decoder = new FrameDecoder(10);
  const frames = [...encodeFrames("bytes", pattern(25), 5)];
  assert.throws(() => frames.forEach((f) => decoder.push(f)), MessageTooLarge);
  const rest = frames.slice(3); // the frame that went over was the third: the others are dropped quietly
  assert.ok(rest.every((f) => decoder.push(f) === null));
  assert.deepEqual(decoder.push(new Uint8Array([1, 104, 105]))?.payload, new Uint8Array([104, 105]));
  const announced = [...encodeFrames("str", pattern(25), 5, true)];
  assert.throws(() => decoder.push(announced[0]), /more than max_receive_size \(10\)/);
  assert.ok(announced.slice(1).every((f) => decoder.push(f) === null));
  assert.equal(decoder.push(new Uint8Array([3, 49]))?.kind, "json");
});

test("a message framed from parts as they come gives the frames of the whole payload", () => {
  const payload = new Uint8Array(10_000).map((_, i) => i % 253);
  const whole = [...encodeFrames("bytes", payload, 1000, true)];
  // Parts that end inside frames, on a frame's border, and an empty one.
  const cuts = [0, 1, 998, 999, 999, 4321, 9999, 10_000];
  const writer = new FrameWriter("bytes", payload.length, 1000, true);
  const parted = cuts.slice(1).flatMap((end, i) => [...writer.write(payload.subarray(cuts[i], end))]);
  writer.finish();
  assert.deepEqual(parted, whole);
  // An empty message is one frame; a message cut short or overfilled says so.
  assert.deepEqual([...new FrameWriter("str", 0, 1000).write(new Uint8Array(0))], [new Uint8Array([1])]);
  const short = new FrameWriter("bytes", 10, 1000);
  [...short.write(new Uint8Array(4))];
  assert.throws(() => short.finish(), /ended after 4 of its 10 bytes/);
  assert.throws(() => [...new FrameWriter("bytes", 3, 1000).write(new Uint8Array(4))], /goes past the message's 3 bytes/);
});

test("extension start: a decoder that comes in mid-message drops the tail and takes the next message", () => {
  const first = [...encodeFrames("bytes", pattern(2500), 1000, true, true)];
  const second = [...encodeFrames("str", new TextEncoder().encode("hello"), 1000, false, true)];
  assert.equal(first[0][0], 4 | FIRST);
  assert.equal(first[1][0] & FIRST, 0);
  assert.equal(second[0][0], 1 | FIRST);
  const late = new FrameDecoder(Infinity, true);
  assert.equal(late.push(first[2]), null);
  assert.equal(late.push(first[3]), null);
  assert.equal(late.skipped, 2);
  assert.equal(new TextDecoder().decode(late.push(second[0])?.payload), "hello");
  const whole = first.map((f) => late.push(f)).at(-1);
  assert.deepEqual(whole?.payload, pattern(2500));
});

test("SFU pacing: a sender waits for its receivers' ACKs, and a receiver silent too long stops holding it", () => {
  const window = new AckWindow(100, 2, 5);
  assert.equal(window.sent(60, ["B", "C"], 0), null);
  assert.deepEqual(control(/** @type {Uint8Array} */ (window.sent(60, ["B", "C"], 0))), { type: SYNC, sequence: 1, sender: "" });
  window.sent(100, ["B", "C"], 1);
  assert.equal(window.blocked(1), true);
  assert.deepEqual(control(ackFrame(2, "Ä")), { type: ACK, sequence: 2, sender: "Ä" });
  window.acked("B", 2);
  window.acked("C", 1);
  assert.equal(window.blocked(1), false);
  window.sent(100, ["B", "C"], 2);
  assert.equal(window.blocked(4), true);
  assert.equal(window.blocked(6.5), false);
  assert.deepEqual([...window.deaf], ["C"]);
});
