// Framing of nbcall messages on an RTCDataChannel.
//
// Between two nbcall phones (each says `"framing": "nbcall/1"` in its call or answer) every frame is binary:
//   byte 0: the message kind (1 = str, 2 = bytes, 3 = json), with MORE (0x80) set when more frames follow
//   bytes 1..: a chunk of the payload (UTF-8 for str and json)
// A reliable, ordered channel keeps the chunks in order, so no length or sequence number is needed.
// With any other peer (for example the seed's browser client) messages travel as they are: a str as a text
// frame, bytes as a binary frame, JSON as its text.

export const PROTOCOL = "nbcall/1";
export const KINDS = /** @type {const} */ (["str", "bytes", "json"]);
const MORE = 0x80;

/** @typedef {"str" | "bytes" | "json"} Kind */

/**
 * Split one payload into frames of at most `maxFrame` bytes (header included).
 * @param {Kind} kind
 * @param {Uint8Array} payload
 * @param {number} maxFrame
 * @returns {Generator<Uint8Array>}
 */
export function* encodeFrames(kind, payload, maxFrame) {
  const code = KINDS.indexOf(kind) + 1;
  if (code === 0) throw new Error(`unknown message kind ${JSON.stringify(kind)}`);
  if (maxFrame < 2) throw new Error(`frame size ${maxFrame} is too small`);
  const step = maxFrame - 1;
  let offset = 0;
  do {
    const chunk = payload.subarray(offset, offset + step);
    offset += chunk.length;
    const frame = new Uint8Array(chunk.length + 1);
    frame[0] = offset < payload.length ? code | MORE : code;
    frame.set(chunk, 1);
    yield frame;
  } while (offset < payload.length);
}

/** Reassembles frames into whole messages; one per data channel. */
export class FrameDecoder {
  constructor() {
    /** @type {Uint8Array[]} */
    this.chunks = [];
    this.kind = 0;
  }

  /**
   * Feed one binary frame; returns the finished message, or null while more frames are due.
   * @param {Uint8Array} frame
   * @returns {{kind: Kind, payload: Uint8Array} | null}
   */
  push(frame) {
    if (frame.length === 0) throw new Error("empty frame: an nbcall frame has at least its kind byte");
    const code = frame[0] & ~MORE;
    if (code < 1 || code > KINDS.length) throw new Error(`unknown message kind byte ${frame[0]}`);
    if (this.chunks.length && code !== this.kind) {
      this.chunks = []; // drop the broken message, so that the next one decodes
      throw new Error(`frame of kind ${code} inside a message of kind ${this.kind}`);
    }
    this.kind = code;
    this.chunks.push(frame.subarray(1));
    if (frame[0] & MORE) return null;
    const payload = concat(this.chunks);
    this.chunks = [];
    return { kind: KINDS[code - 1], payload };
  }
}

/**
 * @param {Uint8Array[]} parts
 * @returns {Uint8Array}
 */
function concat(parts) {
  if (parts.length === 1) return parts[0];
  const total = parts.reduce((n, p) => n + p.length, 0);
  const out = new Uint8Array(total);
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}
