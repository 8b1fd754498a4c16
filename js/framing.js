// Framing of nbcall messages on an RTCDataChannel.
//
// Between two nbcall phones (each says `"framing": "nbcall/1"` in its call or answer) every frame is binary:
//   byte 0: the message kind (1 = str, 2 = bytes, 3 = json), with MORE (0x80) set when more frames follow
//   bytes 1..: a chunk of the payload (UTF-8 for str and json)
// A reliable, ordered channel keeps the chunks in order, so no length or sequence number is needed.
// Extension "length" (an end that lists it in the signal's `framing_ext` may be sent it): a message that takes
// more than one frame is preceded by a LENGTH frame, byte 0 = 4 and bytes 1..8 its payload's length
// (unsigned, big-endian), so that the receiver can tell how much is left. An nbcall/1 end without the
// extension is never sent one.
// With any other peer (for example the seed's browser client) messages travel as they are: a str as a text
// frame, bytes as a binary frame, JSON as its text.
// A receiver takes at most `maxSize` bytes of one message (the phone's max_receive_size): a larger one, announced
// or counted as its frames arrive, is refused once (MessageTooLarge) and its remaining frames are dropped, so
// that the message after it decodes. (nbcall/wire/framing.py does the same.)

export const PROTOCOL = "nbcall/1";
/** The extensions of nbcall/1 this end understands (announced in `framing_ext`); "resume" is the file protocol's,
 * which the phone's kernel speaks (nbcall/call/transfer.py). */
export const EXTENSIONS = /** @type {const} */ (["length", "resume"]);
export const KINDS = /** @type {const} */ (["str", "bytes", "json"]);
const MORE = 0x80;
const LENGTH = 4;

/** @typedef {"str" | "bytes" | "json"} Kind */

/**
 * Split one payload into frames of at most `maxFrame` bytes (header included), after a LENGTH frame when
 * `announceLength` and the payload needs more than one frame.
 * @param {Kind} kind
 * @param {Uint8Array} payload
 * @param {number} maxFrame
 * @param {boolean} [announceLength]
 * @returns {Generator<Uint8Array>}
 */
export function* encodeFrames(kind, payload, maxFrame, announceLength = false) {
  const writer = new FrameWriter(kind, payload.length, maxFrame, announceLength);
  yield* writer.write(payload);
  writer.finish();
}

/**
 * Frames one message of a known `size` from its payload given in parts, as they come: a frame may hold the end
 * of one part and the start of the next. The frames are those encodeFrames() makes of the whole payload.
 */
export class FrameWriter {
  /** @param {Kind} kind @param {number} size @param {number} maxFrame @param {boolean} [announceLength] */
  constructor(kind, size, maxFrame, announceLength = false) {
    this.code = KINDS.indexOf(kind) + 1;
    if (this.code === 0) throw new Error(`unknown message kind ${JSON.stringify(kind)}`);
    if (maxFrame < 2) throw new Error(`frame size ${maxFrame} is too small`);
    this.size = size;
    this.step = maxFrame - 1;
    this.announce = announceLength && size > this.step;
    /** Payload bytes written so far. */
    this.done = 0;
    /** The frame being filled, and how much of its payload it has. @type {Uint8Array | null} */
    this.frame = null;
    this.fill = 0;
  }

  /**
   * The frames the next `part` of the payload completes (the first call also gives the LENGTH frame).
   * @param {Uint8Array} part
   * @returns {Generator<Uint8Array>}
   */
  *write(part) {
    if (this.announce) {
      this.announce = false;
      yield lengthFrame(this.size);
    }
    if (this.done + part.length > this.size) {
      throw new Error(`a part of ${part.length} bytes goes past the message's ${this.size} bytes`);
    }
    if (this.size === 0 && !this.frame) {
      this.frame = new Uint8Array([this.code]); // an empty message is one frame
      yield this.frame;
      return;
    }
    let at = 0;
    while (at < part.length) {
      if (!this.frame) {
        const length = Math.min(this.step, this.size - this.done);
        this.frame = new Uint8Array(length + 1);
        this.frame[0] = this.done + length < this.size ? this.code | MORE : this.code;
        this.fill = 0;
      }
      const n = Math.min(part.length - at, this.frame.length - 1 - this.fill);
      this.frame.set(part.subarray(at, at + n), 1 + this.fill);
      this.fill += n;
      this.done += n;
      at += n;
      if (this.fill === this.frame.length - 1) {
        const frame = this.frame;
        this.frame = null;
        yield frame;
      }
    }
  }

  /** Check that the whole message was written. */
  finish() {
    if (this.done < this.size) throw new Error(`the message ended after ${this.done} of its ${this.size} bytes`);
  }
}

/** @param {number} length @returns {Uint8Array} */
function lengthFrame(length) {
  const frame = new Uint8Array(9);
  frame[0] = LENGTH;
  new DataView(frame.buffer).setBigUint64(1, BigInt(length));
  return frame;
}

/** A message larger than the receiver takes: it is dropped, and the next one decodes. */
export class MessageTooLarge extends Error {
  /** @param {number} size @param {number} limit */
  constructor(size, limit) {
    super(
      `dropped a message: ${size} bytes is more than max_receive_size (${limit}); raise max_receive_size on the ` +
        "receiver, or send it as a file to a receiver with a receive_dir",
    );
    this.name = "MessageTooLarge";
  }
}

/** Reassembles frames into whole messages of at most `maxSize` bytes; one per data channel. */
export class FrameDecoder {
  /** @param {number} [maxSize] */
  constructor(maxSize = Infinity) {
    /** The largest message taken; the owner may change it between frames. */
    this.maxSize = maxSize;
    /** The frames left of a message refused as too large are dropped, up to its last one. */
    this.dropping = false;
    /** @type {Uint8Array[]} */
    this.chunks = [];
    this.kind = 0;
    /** Payload bytes of the message being reassembled so far (for progress reports). */
    this.pending = 0;
    /** That message's announced length (extension "length"), or null when not announced. @type {number | null} */
    this.expected = null;
    /** Whether a message is under way (more frames are due). */
    this.open = false;
    /** Payload bytes held now: pending minus what take() handed over. */
    this.held = 0;
  }

  /** The kind of the message under way. @returns {Kind} */
  get kindName() {
    return KINDS[this.kind - 1];
  }

  /**
   * Hand over the payload held so far of the message under way, as a standalone copy; its last frame then
   * brings only the rest. (A receiver passes a large message on in parts while it arrives.)
   * @returns {Uint8Array<ArrayBuffer>}
   */
  take() {
    const taken = concat(this.chunks, true);
    this.chunks = [];
    this.held = 0;
    return taken;
  }

  /**
   * Feed one binary frame; returns the finished message, or null while more frames are due.
   * @param {Uint8Array} frame
   * @returns {{kind: Kind, payload: Uint8Array} | null}
   */
  push(frame) {
    if (frame.length === 0) throw new Error("empty frame: an nbcall frame has at least its kind byte");
    if (frame[0] === LENGTH) {
      if (this.open || this.dropping) {
        this.reset(); // drop the broken message, so that the next one decodes
        throw new Error("length frame inside a message");
      }
      if (frame.length !== 9) throw new Error(`length frame of ${frame.length} bytes: it has 9`);
      const announced = Number(new DataView(frame.buffer, frame.byteOffset, 9).getBigUint64(1));
      if (announced > this.maxSize) {
        this.dropping = true; // the message it announces
        throw new MessageTooLarge(announced, this.maxSize);
      }
      this.expected = announced;
      return null;
    }
    const code = frame[0] & ~MORE;
    const more = Boolean(frame[0] & MORE);
    if (code < 1 || code > KINDS.length) throw new Error(`unknown message kind byte ${frame[0]}`);
    if (this.dropping) {
      this.dropping = more;
      return null;
    }
    if (this.open && code !== this.kind) {
      this.reset();
      throw new Error(`frame of kind ${code} inside a message of kind ${this.kind}`);
    }
    if (this.pending + frame.length - 1 > this.maxSize) {
      const size = this.pending + frame.length - 1;
      this.reset();
      this.dropping = more;
      throw new MessageTooLarge(size, this.maxSize);
    }
    this.kind = code;
    this.chunks.push(frame.subarray(1));
    this.pending += frame.length - 1;
    this.held += frame.length - 1;
    this.open = more;
    if (this.open) return null;
    const payload = concat(this.chunks);
    this.reset();
    return { kind: KINDS[code - 1], payload };
  }

  reset() {
    this.chunks = [];
    this.pending = 0;
    this.held = 0;
    this.expected = null;
    this.open = false;
    this.dropping = false;
  }
}

/**
 * @param {Uint8Array[]} parts @param {boolean} [copy] always a new buffer, even for one part
 * @returns {Uint8Array<ArrayBuffer>}
 */
export function concat(parts, copy = false) {
  if (parts.length === 1 && !copy) return /** @type {Uint8Array<ArrayBuffer>} */ (parts[0]);
  const total = parts.reduce((n, p) => n + p.length, 0);
  const out = new Uint8Array(total);
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}
