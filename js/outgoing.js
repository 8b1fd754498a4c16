// A message Python sends in parts (`send` with its `size`, then `send_part`; docs/widget-protocol.md): the
// parts wait here until every link sending the message has framed them onto its data channel, and Python is
// told (`sent`) how far that got, which lets it send more. The page so holds at most Python's window of a
// message, however large, and the data channel starts sending with the first part.

/** The parts of one message, read by each link that sends it. */
export class Outgoing {
  /**
   * @param {number} size the message's payload bytes
   * @param {(done: number) => void} onTaken told how many bytes every reader has taken, as that grows
   */
  constructor(size, onTaken) {
    this.size = size;
    this.onTaken = onTaken;
    /** Bytes received from Python so far. */
    this.received = 0;
    /** Parts not yet taken by every reader; `first` is the index of parts[0] among all parts. @type {Uint8Array[]} */
    this.parts = [];
    this.first = 0;
    /** The start of the message, for its chat row. @type {Uint8Array} */
    this.head = new Uint8Array(0);
    /** @type {Set<PartReader>} */
    this.readers = new Set();
    /** Whether the readers were made: before, parts wait for them. */
    this.attached = false;
    this.reported = 0;
    /** Readers waiting for the next part. @type {(() => void)[]} */
    this.waiting = [];
  }

  /** Whether every part arrived. */
  get complete() {
    return this.received >= this.size;
  }

  /** The next part from Python. @param {Uint8Array} part */
  push(part) {
    if (!this.received && !this.parts.length) this.head = part.slice(0, 2000);
    this.received += part.length;
    if (this.attached && !this.readers.size) {
      this.report(this.received); // every link failed: nothing will read it (Python hears of the failure)
      return;
    }
    this.parts.push(part);
    this.wake();
  }

  /**
   * One reader per link sending the message, made at once so that none misses a part.
   * @param {number} count @returns {PartReader[]}
   */
  split(count) {
    this.attached = true;
    const made = Array.from({ length: count }, () => new PartReader(this, this.first));
    for (const reader of made) this.readers.add(reader);
    if (!count) this.release();
    return made;
  }

  /** A reader is done (or failed): it holds no part back any more. @param {PartReader} reader */
  leave(reader) {
    if (this.readers.delete(reader)) this.release();
  }

  /** Drop the parts every reader has passed on, and tell how far every reader got. */
  release() {
    if (!this.readers.size) {
      this.first += this.parts.length;
      this.parts = [];
      this.report(this.received);
      return;
    }
    let next = Infinity;
    let passed = Infinity;
    for (const reader of this.readers) {
      next = Math.min(next, reader.passedNext);
      passed = Math.min(passed, reader.passed);
    }
    this.parts.splice(0, next - this.first);
    this.first = next;
    this.report(passed);
  }

  /** @param {number} done */
  report(done) {
    if (done <= this.reported) return;
    this.reported = done;
    this.onTaken(done);
  }

  wake() {
    const waiting = this.waiting;
    this.waiting = [];
    for (const resolve of waiting) resolve();
  }
}

/** One link's reading of an Outgoing message: an async iterator of its parts, in order. */
export class PartReader {
  /** @param {Outgoing} message @param {number} next */
  constructor(message, next) {
    this.message = message;
    /** The index of the next part to give, and the bytes given before it. */
    this.index = next;
    this.given = 0;
    /** The same for the parts the link has passed on (framed and queued on its channel). */
    this.passedNext = next;
    this.passed = 0;
  }

  [Symbol.asyncIterator]() {
    return this;
  }

  /** @returns {Promise<IteratorResult<Uint8Array>>} */
  async next() {
    const m = this.message;
    if (this.index > this.passedNext) {
      // Asking for the next part means the last one is framed and queued: it may go.
      this.passedNext = this.index;
      this.passed = this.given;
      m.release();
    }
    for (;;) {
      if (this.given >= m.size && this.index > 0) {
        m.leave(this);
        return { done: true, value: undefined };
      }
      const part = m.parts[this.index - m.first];
      if (part) {
        this.index += 1;
        this.given += part.length;
        return { done: false, value: part };
      }
      await new Promise((resolve) => m.waiting.push(() => resolve(undefined)));
      if (!m.readers.has(this)) return { done: true, value: undefined };
    }
  }

  /** The link stopped reading (its send failed): it holds nothing back. */
  async return() {
    this.message.leave(this);
    return { done: /** @type {const} */ (true), value: undefined };
  }
}
