// Transfer progress: what a phone shows and tells Python while a large message or a file is on its way.
// Reports come from the data channel (bytes handed over, bytes arrived); this adds the rate and the time
// left, follows files across their messages (nbcall.call.transfer: a "start" JSON with the size, for a resumed
// file a "from" JSON with where its bytes start, byte chunks, an "end" JSON), and keeps the reports to Python to
// a few a second.

/** Sends and receptions at least this large report their progress (as the Python peer's PROGRESS_MIN). */
export const PROGRESS_MIN = 1024 * 1024;
/** Reports to Python at most this often, in ms; the last one of a transfer always goes. */
const REPORT_MS = 100;
const FILE_KEY = "nbcall_file";

/**
 * @typedef {"in" | "out"} Direction
 * @typedef {{direction: Direction, peer: string, name: string | null, done: number, total: number | null,
 *   rate: number, eta: number | null}} Report
 * @typedef {{name: string, size: number, done: number, started: number, base: number}} FileState
 */

export class Transfers {
  /**
   * @param {(report: Report | null) => void} onReport told of every change, to show it (null: none under way)
   * @param {(report: Report) => void} onPythonReport told at most every REPORT_MS, and of each transfer's end
   * @param {() => number} [now] milliseconds
   */
  constructor(onReport, onPythonReport, now = () => performance.now()) {
    this.onReport = onReport;
    this.onPythonReport = onPythonReport;
    this.now = now;
    /** Files under way, by direction and peer. @type {Map<string, FileState>} */
    this.files = new Map();
    /** The names of the files seen, by transfer ID (a verdict names only the ID). @type {Map<string, string>} */
    this.names = new Map();
    /** When the message under way started, by direction and peer. @type {Map<string, number>} */
    this.started = new Map();
    /** The transfer shown now, or null. @type {Report | null} */
    this.current = null;
    this.reportedAt = -Infinity;
  }

  /**
   * A whole message passed (sent, or received): a file's start, chunk or end moves that file on.
   * Returns what a chat shows for it: the message itself ("message"), nothing ("hidden": a file's chunk or
   * end), or a file row ({file: ...}).
   * @param {Direction} direction @param {string} peer @param {string} kind @param {number} size
   * @param {Uint8Array} head the message, or at least its start (a file step is small, so whole)
   * @returns {"message" | "hidden" | {file: string, size?: number, ok?: boolean, error?: string}}
   */
  message(direction, peer, kind, size, head) {
    const key = `${direction}:${peer}`;
    const file = this.files.get(key);
    if (kind === "bytes" && file) {
      file.done += size;
      this.started.delete(key);
      if (file.size >= PROGRESS_MIN) this.update(direction, peer, file.name, file.done, file.size, file.started, file.base);
      return "hidden";
    }
    const control = kind === "json" && size < 4096 ? fileControl(head) : null;
    if (!control) {
      const started = this.started.get(key);
      if (started !== undefined) {
        this.started.delete(key);
        this.finish(direction, peer, null, size, size, started);
      }
      return "message";
    }
    if (control.step === "start") {
      const state = { name: control.name, size: control.size, done: 0, started: this.now(), base: 0 };
      this.files.set(key, state);
      this.names.set(control.id, control.name);
      if (this.names.size > 1000) this.names.delete(/** @type {string} */ (this.names.keys().next().value));
      if (control.size >= PROGRESS_MIN) this.update(direction, peer, state.name, 0, state.size, state.started);
      return { file: control.name, size: control.size };
    }
    if (control.step === "from") {
      // A resumed file: its bytes start here, and its rate counts only those that travel.
      if (file) {
        Object.assign(file, { done: control.offset, base: control.offset, started: this.now() });
        if (file.size >= PROGRESS_MIN) this.update(direction, peer, file.name, file.done, file.size, file.started, file.base);
      }
      return "hidden";
    }
    if (control.step === "end" || control.step === "cancel") {
      if (file) {
        this.files.delete(key);
        if (file.size >= PROGRESS_MIN) this.finish(direction, peer, file.name, file.done, file.size, file.started, file.base);
      }
      return "hidden";
    }
    if (control.step === "offset") return "hidden";
    const name = this.names.get(control.id) ?? "a file";
    return { file: name, ok: control.ok, ...(control.error ? { error: control.error } : {}) };
  }

  /**
   * Part of a message passed: `done` of its `total` bytes (null: not announced).
   * @param {Direction} direction @param {string} peer @param {number} done @param {number | null} total
   */
  partial(direction, peer, done, total) {
    const key = `${direction}:${peer}`;
    const file = this.files.get(key);
    if (file) {
      if (file.size < PROGRESS_MIN) return;
      this.update(direction, peer, file.name, Math.min(file.size, file.done + done), file.size, file.started, file.base);
      return;
    }
    if ((total ?? done) < PROGRESS_MIN) return;
    if (!this.started.has(key)) this.started.set(key, this.now());
    this.update(direction, peer, null, done, total, /** @type {number} */ (this.started.get(key)));
  }

  /**
   * @param {Direction} direction @param {string} peer @param {string | null} name
   * @param {number} done @param {number | null} total @param {number} started
   * @param {number} [base] bytes that were there before it started (a resumed file's)
   */
  update(direction, peer, name, done, total, started, base = 0) {
    const seconds = Math.max(1e-3, (this.now() - started) / 1000);
    const rate = (done - base) / seconds;
    const eta = total !== null && rate > 0 ? (total - done) / rate : null;
    const report = { direction, peer, name, done, total, rate, eta };
    this.current = report;
    this.onReport(report);
    const now = this.now();
    if (now - this.reportedAt >= REPORT_MS || done === total) {
      this.reportedAt = now;
      this.onPythonReport(report);
    }
  }

  /**
   * A transfer ended: its final report (always told to Python), then nothing is shown.
   * @param {Direction} direction @param {string} peer @param {string | null} name
   * @param {number} done @param {number} total @param {number} started @param {number} [base]
   */
  finish(direction, peer, name, done, total, started, base = 0) {
    this.update(direction, peer, name, done, total, started, base);
    this.current = null;
    this.onReport(null);
  }
}

/**
 * The file-transfer step a JSON message is, if it is one.
 * @param {Uint8Array} payload
 * @returns {{step: "start", id: string, name: string, size: number} | {step: "end"} | {step: "cancel"} |
 *   {step: "from", offset: number} | {step: "offset"} |
 *   {step: "verdict", id: string, ok: boolean, error?: string} | null}
 */
export function fileControl(payload) {
  let value;
  try {
    value = JSON.parse(new TextDecoder().decode(payload));
  } catch {
    return null;
  }
  if (!value || typeof value !== "object" || !(FILE_KEY in value)) return null;
  const id = String(value.id ?? "");
  if (value[FILE_KEY] === "start" && Number.isFinite(value.size)) {
    return { step: "start", id, name: String(value.name ?? "unnamed"), size: value.size };
  }
  if (value[FILE_KEY] === "end") return { step: "end" };
  if (value[FILE_KEY] === "cancel") return { step: "cancel" };
  if (value[FILE_KEY] === "offset") return { step: "offset" };
  if (value[FILE_KEY] === "from" && Number.isSafeInteger(value.offset) && value.offset >= 0) {
    return { step: "from", offset: value.offset };
  }
  if (value[FILE_KEY] === "verdict") {
    return { step: "verdict", id, ok: Boolean(value.ok), ...(value.error ? { error: String(value.error) } : {}) };
  }
  return null;
}
