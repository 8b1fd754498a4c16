// One peer's data channel: sending a message (framed with backpressure for an nbcall peer, plain for any other),
// and turning what arrives into whole messages and then into the parts Python receives.

import { FrameDecoder, FrameWriter, MessageTooLarge, concat } from "./framing.js";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * @typedef {import("./framing.js").Kind} Kind
 * The channel as the sender needs it (an RTCDataChannel, or a stand-in in tests).
 * @typedef {Pick<RTCDataChannel, "readyState" | "bufferedAmount" | "bufferedAmountLowThreshold" |
 *   "addEventListener" | "removeEventListener"> & {send(data: string | Uint8Array<ArrayBuffer>): void}} SendChannel
 * @typedef {{frameSize: number, highWater: number, maxMessageSize?: number | null}} SendLimits
 * @typedef {{framed: boolean, announceLength?: boolean}} Framing how the peer takes messages (see framing.js)
 */

/**
 * Send one message on `channel`. An nbcall peer (`framed`) gets frames of at most the frame size (and the
 * SCTP transport's maxMessageSize), after a LENGTH frame if it takes them, and sending waits while more than
 * `highWater` bytes are queued. Any other peer gets plain frames: text for str and JSON, binary for bytes.
 * `onProgress(done)` is told the payload bytes that left the channel's queue, after each frame.
 * @param {SendChannel | null} channel @param {Framing} framing
 * @param {Kind} kind @param {Uint8Array<ArrayBuffer>} payload @param {SendLimits} limits
 * @param {(done: number) => void} [onProgress]
 */
export function sendMessage(channel, framing, kind, payload, limits, onProgress) {
  return sendParts(channel, framing, kind, payload.length, [payload], limits, onProgress);
}

/**
 * Send one message of `size` bytes whose payload comes in `parts` (as Python hands them over): framing starts
 * with the first part, and the next part is asked for once the frames of this one are queued on the channel
 * (so the caller may let go of a part when it asks for the next). A plain (unframed) message is sent whole.
 * @param {SendChannel | null} channel @param {Framing} framing @param {Kind} kind @param {number} size
 * @param {Iterable<Uint8Array> | AsyncIterable<Uint8Array>} parts @param {SendLimits} limits
 * @param {(done: number) => void} [onProgress]
 */
export async function sendParts(channel, { framed, announceLength = false }, kind, size, parts, limits, onProgress) {
  if (!channel || channel.readyState !== "open") {
    throw new Error(`the data channel is not open (${channel ? channel.readyState : "no call"})`);
  }
  if (!framed) {
    /** @type {Uint8Array[]} */
    const all = [];
    for await (const part of parts) all.push(part);
    const payload = concat(all);
    if (kind === "bytes") channel.send(payload);
    else channel.send(decoder.decode(payload));
    return;
  }
  const frameSize = Math.min(limits.frameSize, limits.maxMessageSize || limits.frameSize);
  channel.bufferedAmountLowThreshold = limits.highWater / 2;
  const writer = new FrameWriter(kind, size, frameSize, announceLength);
  let handed = 0;
  /** @param {Uint8Array} part */
  const write = async (part) => {
    for (const frame of writer.write(part)) {
      if (channel.bufferedAmount > limits.highWater) await drained(channel);
      if (channel.readyState !== "open") throw new Error("the data channel closed while sending");
      channel.send(/** @type {Uint8Array<ArrayBuffer>} */ (frame));
      if (!onProgress) continue;
      handed += frame.length;
      onProgress(Math.min(size, Math.max(0, handed - channel.bufferedAmount)));
    }
  };
  // A payload at hand starts on the channel in this task; parts still coming are awaited one by one.
  if (Symbol.iterator in parts) for (const part of parts) await write(part);
  else for await (const part of parts) await write(part);
  writer.finish();
  onProgress?.(size);
}

/**
 * Resolves when the channel's queue fell below its low threshold; rejects if the channel closes first.
 * @param {Pick<SendChannel, "addEventListener" | "removeEventListener">} channel
 * @returns {Promise<void>}
 */
export function drained(channel) {
  return new Promise((resolve, reject) => {
    const done = () => {
      channel.removeEventListener("bufferedamountlow", done);
      channel.removeEventListener("close", closed);
      resolve();
    };
    const closed = () => {
      channel.removeEventListener("bufferedamountlow", done);
      channel.removeEventListener("close", closed);
      reject(new Error("the data channel closed while sending"));
    };
    channel.addEventListener("bufferedamountlow", done);
    channel.addEventListener("close", closed);
  });
}

/**
 * A receiver for one channel: feed it each `message` event's data; it calls `onMessage` with every whole
 * message. With a framed peer, binary frames are reassembled (a broken frame throws, and the next message
 * decodes), and `onPartial(done, total, frames)` hears of a message still arriving (`total` null when its
 * length was not announced; `frames.take()` hands over what arrived so far, and `onMessage` then gets the rest);
 * text frames are always plain str messages. A message over `maxSize()` bytes is dropped: MessageTooLarge is
 * thrown once, and the message after it decodes. A message cut off by the next one's first frame is dropped
 * too, and `onDropped(problem)` says so before the next one is taken. `unfinished()` describes the message
 * under way, if one is (to say what a closing channel dropped), or returns null.
 * @param {() => boolean} framed read when each frame arrives: the peer says so only in its answer
 * @param {(kind: Kind, payload: Uint8Array<ArrayBuffer>) => void} onMessage
 * @param {(done: number, total: number | null, frames: FrameDecoder) => void} [onPartial]
 * @param {() => number} [maxSize] read when each frame arrives (the setting may change)
 * @param {(problem: string) => void} [onDropped]
 * @returns {((data: string | ArrayBuffer) => void) & {unfinished: () => string | null}}
 */
export function receiver(framed, onMessage, onPartial, maxSize = () => Infinity, onDropped = () => {}) {
  const frames = new FrameDecoder();
  /** @param {string | ArrayBuffer} data */
  const receive = (data) => {
    frames.maxSize = maxSize();
    const size = typeof data === "string" ? data.length : data.byteLength;
    // An unframed message arrives whole: too late to spare the page, but not Python.
    if (size > frames.maxSize && (typeof data === "string" || !framed())) throw new MessageTooLarge(size, frames.maxSize);
    if (typeof data === "string") return onMessage("str", encoder.encode(data));
    const bytes = new Uint8Array(data);
    if (!framed()) return onMessage("bytes", bytes);
    const message = frames.push(bytes);
    if (frames.cut) onDropped(`dropped a message cut off after ${received(frames.cut)}: the next one began`);
    if (message) onMessage(message.kind, /** @type {Uint8Array<ArrayBuffer>} */ (message.payload));
    else if (frames.pending) onPartial?.(frames.pending, frames.expected, frames);
  };
  const unfinished = () =>
    frames.open || frames.expected !== null ? `dropped a message cut off after ${received({ bytes: frames.pending, expected: frames.expected })}` : null;
  return Object.assign(receive, { unfinished });
}

/** @param {{bytes: number, expected: number | null}} cut */
function received({ bytes, expected }) {
  return expected === null ? `${bytes} bytes` : `${bytes} of its ${expected} bytes`;
}

/**
 * Split a received payload into the parts Python receives, each a standalone ArrayBuffer of at most
 * `partSize` bytes (the widget channel mishandles views into a larger buffer). An empty payload is one part.
 * A payload that is a whole buffer of its own (a message joined from its frames) and fits one part goes as
 * that buffer: a copy of every received file chunk fewer on the page's busy thread.
 * @param {Uint8Array<ArrayBuffer>} payload @param {number} partSize
 * @returns {ArrayBuffer[]}
 */
export function parts(payload, partSize) {
  if (payload.byteOffset === 0 && payload.length === payload.buffer.byteLength && payload.length <= partSize) {
    return [payload.buffer];
  }
  const count = Math.max(1, Math.ceil(payload.length / partSize));
  const out = [];
  for (let i = 0; i < count; i++) {
    const start = payload.byteOffset + i * partSize;
    out.push(payload.buffer.slice(start, Math.min(start + partSize, payload.byteOffset + payload.length)));
  }
  return out;
}
