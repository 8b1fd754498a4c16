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
// Extension "start": the first frame of every message has FIRST (0x40) set in byte 0 (the LENGTH frame when there
// is one), so that a receiver that comes in while a message is under way (a member joining an SFU room) drops
// frames up to the next message's first one instead of taking a tail for a message.
// In an SFU room every member speaks "start", and two control frames pace the senders (AckWindow): SYNC (byte 0 =
// 5, bytes 1..8 a sequence number) after every window's worth of bytes, and ACK (byte 0 = 6, bytes 1..8 the
// sequence number, bytes 9.. the UTF-8 ID of the member whose SYNC it answers), which each receiver broadcasts.
// ACK 0 is sent unasked, meaning "I receive you". (Byte for byte as nbcall/wire/framing.py.)
// With any other peer (for example the seed's browser client) messages travel as they are: a str as a text
// frame, bytes as a binary frame, JSON as its text.
// A receiver takes at most `maxSize` bytes of one message (the phone's max_receive_size): a larger one, announced
// or counted as its frames arrive, is refused once (MessageTooLarge) and its remaining frames are dropped, so
// that the message after it decodes. (nbcall/wire/framing.py does the same.)

export const PROTOCOL = "nbcall/1";
/** The extensions of nbcall/1 this end understands (announced in `framing_ext`); "resume" is the file protocol's,
 * which the phone's kernel speaks (nbcall/call/transfer.py). */
export const EXTENSIONS = /** @type {const} */ (["length", "resume", "start"]);
export const KINDS = /** @type {const} */ (["str", "bytes", "json"]);
const MORE = 0x80;
export const FIRST = 0x40;
const LENGTH = 4;
export const SYNC = 5;
export const ACK = 6;
/** The largest data-channel message Janus relays (a 16-bit length in its plugin API: 65,536 is dropped). */
export const SFU_FRAME = 65535;

/** @typedef {"str" | "bytes" | "json"} Kind */

/**
 * Split one payload into frames of at most `maxFrame` bytes (header included), after a LENGTH frame when
 * `announceLength` and the payload needs more than one frame; with `markStart` the first frame carries FIRST.
 * @param {Kind} kind
 * @param {Uint8Array} payload
 * @param {number} maxFrame
 * @param {boolean} [announceLength]
 * @param {boolean} [markStart]
 * @returns {Generator<Uint8Array>}
 */
export function* encodeFrames(kind, payload, maxFrame, announceLength = false, markStart = false) {
  const writer = new FrameWriter(kind, payload.length, maxFrame, announceLength, markStart);
  yield* writer.write(payload);
  writer.finish();
}

/**
 * Frames one message of a known `size` from its payload given in parts, as they come: a frame may hold the end
 * of one part and the start of the next. The frames are those encodeFrames() makes of the whole payload.
 */
export class FrameWriter {
  /**
   * @param {Kind} kind @param {number} size @param {number} maxFrame @param {boolean} [announceLength]
   * @param {boolean} [markStart] set FIRST on the message's first frame (extension "start")
   */
  constructor(kind, size, maxFrame, announceLength = false, markStart = false) {
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
    /** FIRST until the first frame is out. */
    this.first = markStart ? FIRST : 0;
  }

  /**
   * The frames the next `part` of the payload completes (the first call also gives the LENGTH frame).
   * @param {Uint8Array} part
   * @returns {Generator<Uint8Array>}
   */
  *write(part) {
    if (this.announce) {
      this.announce = false;
      const frame = lengthFrame(this.size);
      frame[0] |= this.first;
      this.first = 0;
      yield frame;
    }
    if (this.done + part.length > this.size) {
      throw new Error(`a part of ${part.length} bytes goes past the message's ${this.size} bytes`);
    }
    if (this.size === 0 && !this.frame) {
      this.frame = new Uint8Array([this.code | this.first]); // an empty message is one frame
      this.first = 0;
      yield this.frame;
      return;
    }
    let at = 0;
    while (at < part.length) {
      if (!this.frame) {
        const length = Math.min(this.step, this.size - this.done);
        this.frame = new Uint8Array(length + 1);
        this.frame[0] = (this.done + length < this.size ? this.code | MORE : this.code) | this.first;
        this.first = 0;
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

/**
 * Reassembles frames into whole messages of at most `maxSize` bytes; one per data channel. It takes first frames
 * marked FIRST always; with `start` it also drops frames until a message's first frame, and counts them in
 * `skipped`.
 */
export class FrameDecoder {
  /** @param {number} [maxSize] @param {boolean} [start] drop frames until a message's first (extension "start") */
  constructor(maxSize = Infinity, start = false) {
    /** The largest message taken; the owner may change it between frames. */
    this.maxSize = maxSize;
    /** The frames left of a message refused as too large are dropped, up to its last one. */
    this.dropping = false;
    this.start = start;
    /** Whether the decoder is at a message boundary it knows (always, without `start`). */
    this.synced = !start;
    /** Frames dropped while waiting for a message's first frame. */
    this.skipped = 0;
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
    /**
     * Set by push() when the frame it took began a new message while one was under way: what was dropped of
     * that one (its bytes so far, and its announced length or null). Null otherwise.
     * @type {{bytes: number, expected: number | null} | null}
     */
    this.cut = null;
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
    this.cut = null;
    if (frame[0] & FIRST) {
      // A message cut off: we came in during it, or its sender gave up on it. Its bytes so far are dropped, and
      // `cut` says how many (a message refused as too large was said so already).
      if (this.open || this.expected !== null) this.cut = { bytes: this.pending, expected: this.expected };
      if (this.open || this.expected !== null || this.dropping) this.reset();
      this.synced = true;
      frame = frame.slice();
      frame[0] &= ~FIRST;
    } else if (!this.synced) {
      this.skipped += 1;
      return null;
    }
    if (frame[0] === LENGTH) {
      if (this.open || this.dropping) {
        this.drop();
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
      this.drop();
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

  /** Drop a broken message, so that the next one decodes (with `start`: from its first frame). */
  drop() {
    this.reset();
    this.synced = !this.start;
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

/** A SYNC frame: "tell me when you have everything I sent up to here". @param {number} sequence */
export function syncFrame(sequence) {
  const frame = new Uint8Array(9);
  frame[0] = SYNC;
  new DataView(frame.buffer).setBigUint64(1, BigInt(sequence));
  return frame;
}

/** An ACK frame answering `sender`'s SYNC `sequence` (0: "I receive you"). @param {number} sequence @param {string} sender */
export function ackFrame(sequence, sender) {
  const name = new TextEncoder().encode(sender);
  const frame = new Uint8Array(9 + name.length);
  frame[0] = ACK;
  new DataView(frame.buffer).setBigUint64(1, BigInt(sequence));
  frame.set(name, 9);
  return frame;
}

/**
 * `{type: SYNC, sequence, sender: ""}` or `{type: ACK, sequence, sender}` for a pacing frame, null for any other.
 * @param {Uint8Array} frame @returns {{type: number, sequence: number, sender: string} | null}
 */
export function control(frame) {
  if (frame.length < 9 || (frame[0] !== SYNC && frame[0] !== ACK)) return null;
  const sequence = Number(new DataView(frame.buffer, frame.byteOffset, 9).getBigUint64(1));
  if (frame[0] === SYNC) return frame.length === 9 ? { type: SYNC, sequence, sender: "" } : null;
  try {
    return { type: ACK, sequence, sender: new TextDecoder("utf-8", { fatal: true }).decode(frame.subarray(9)) };
  } catch {
    return null;
  }
}

/**
 * Paces one member's sends in an SFU room by its receivers' acknowledgements (as nbcall/wire/framing.py
 * AckWindow): Janus applies no back-pressure, so after every `every` bytes the sender sends a SYNC, and it holds
 * back while `outstanding` SYNCs wait for an ACK from every receiver. A receiver that leaves a SYNC unanswered
 * for `patience` seconds stops holding the sender back ("deaf") until it answers again.
 */
export class AckWindow {
  constructor(every = 256 * 1024, outstanding = 4, patience = 10) {
    this.every = every;
    this.outstanding = outstanding;
    this.patience = patience;
    this.sequence = 0;
    this.count = 0;
    /** @type {Map<number, {waiting: Set<string>, at: number}>} */
    this.syncs = new Map();
    /** @type {Set<string>} */
    this.deaf = new Set();
  }

  /**
   * `size` bytes went to `receivers`; returns a SYNC frame to send next when one is due.
   * @param {number} size @param {Iterable<string>} receivers @param {number} now seconds
   */
  sent(size, receivers, now) {
    this.count += size;
    if (this.count < this.every) return null;
    this.count = 0;
    this.sequence += 1;
    this.syncs.set(this.sequence, { waiting: new Set([...receivers].filter((r) => !this.deaf.has(r))), at: now });
    this.settle();
    return syncFrame(this.sequence);
  }

  /** `receiver` has everything up to SYNC `sequence`. @param {string} receiver @param {number} sequence */
  acked(receiver, sequence) {
    this.deaf.delete(receiver);
    for (const [n, sync] of this.syncs) if (n <= sequence) sync.waiting.delete(receiver);
    this.settle();
  }

  /** `receiver` left: it holds nothing back any more. @param {string} receiver */
  forget(receiver) {
    for (const sync of this.syncs.values()) sync.waiting.delete(receiver);
    this.deaf.delete(receiver);
    this.settle();
  }

  /** Whether the sender must wait for acknowledgements before sending more. @param {number} now seconds */
  blocked(now) {
    while (this.syncs.size >= this.outstanding) {
      const oldest = Math.min(...this.syncs.keys());
      const sync = /** @type {{waiting: Set<string>, at: number}} */ (this.syncs.get(oldest));
      if (now - sync.at < this.patience) return true;
      for (const r of sync.waiting) this.deaf.add(r);
      this.syncs.delete(oldest);
    }
    return false;
  }

  settle() {
    for (const [n, sync] of this.syncs) if (!sync.waiting.size) this.syncs.delete(n);
  }
}
