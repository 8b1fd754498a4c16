// The link to the phone's Python half: tell() sends messages (batched per task), incoming custom messages are
// validated against the widget protocol and dispatched by type, and the settings come from the `_settings` trait.

import { SETTINGS, validate } from "./protocol.js";

/**
 * @typedef {import("./model.js").Model} Model
 * @typedef {import("./protocol.js").ToBrowser} ToBrowser
 * @typedef {import("./protocol.js").ToBrowserType} ToBrowserType
 * @typedef {import("./protocol.js").ToPythonType} ToPythonType
 * @typedef {import("./protocol.js").ToPythonFields} ToPythonFields
 * @typedef {{[K in ToBrowserType]: (message: ToBrowser[K], buffers: DataView[]) => void}} Handlers
 * @typedef {{
 *   max_log: number, max_chat: number, stats_interval_ms: number, stats_history: number,
 *   frame_size: number, high_water: number, part_size: number, max_receive_size: number, max_tiles: number,
 * }} Settings
 */

/**
 * What the browser uses while Python gives no `_settings` (a Python half older than the widget protocol):
 * the numbers both halves hard-coded before.
 * @type {Readonly<Settings>}
 */
export const DEFAULT_SETTINGS = Object.freeze({
  max_log: 500,
  max_chat: 200,
  stats_interval_ms: 1000,
  stats_history: 60,
  // Frames of 64 KiB fit every browser's SCTP message limit, and 1 MiB queued keeps the channel busy
  // without piling the whole payload into the browser's send buffer.
  frame_size: 64 * 1024,
  high_water: 1024 * 1024,
  // Received messages reach Python in parts: Jupyter's websocket refuses messages over 10 MiB by default.
  part_size: 4 * 1024 * 1024,
  // The largest message a phone takes (nbcall.wire.payload.MAX_RECEIVE_SIZE).
  max_receive_size: 512 * 1024 * 1024,
  // A room's grid shows at most this many remote tiles (an SFU room of 25 would be a wall of stamps).
  max_tiles: 9,
});

/**
 * The settings from the `_settings` trait's value. Missing or empty: the defaults. A setting that is missing
 * or not a positive number falls back to its default too, and is returned in `problems` to be logged.
 * @param {unknown} raw
 * @returns {{settings: Settings, problems: string[]}}
 */
export function readSettings(raw) {
  const settings = { ...DEFAULT_SETTINGS };
  /** @type {string[]} */
  const problems = [];
  if (raw == null || typeof raw !== "object" || !Object.keys(raw).length) return { settings, problems };
  const given = /** @type {Record<string, unknown>} */ (raw);
  for (const name of SETTINGS) {
    const value = given[name];
    if (typeof value === "number" && Number.isFinite(value) && value > 0) {
      /** @type {Record<string, number>} */ (settings)[name] = value;
    } else {
      const fallback = settings[/** @type {keyof Settings} */ (name)];
      problems.push(`setting "${name}" is ${JSON.stringify(value)}: using ${fallback}`);
    }
  }
  return { settings, problems };
}

/** Messages that may wait up to LAZY_MS for company (see tell()). @type {ReadonlySet<string>} */
const LAZY = new Set(["rtc", "stats"]);
const LAZY_MS = 100;

export class Link {
  /**
   * @param {Model} model
   * @param {Handlers} handlers what to do with each message type from Python
   * @param {object} [options]
   * @param {(type: string, problem: string, message: unknown) => void} [options.onProblem] told of every
   *   message that is not acted on (after the console warning)
   */
  constructor(model, handlers, { onProblem } = {}) {
    this.model = model;
    this.handlers = handlers;
    this.onProblem = onProblem;
    /** Messages for Python not sent yet, see tell(). @type {Record<string, unknown>[]} */
    this.batch = [];
    this.flushQueued = false;
    /** @type {ReturnType<typeof setTimeout> | 0} */
    this.lazyTimer = 0;
    this.receive = this.receive.bind(this);
    this.readSettings = this.readSettings.bind(this);
    /** The settings Python gave (see readSettings). @type {Settings} */
    this.settings = { ...DEFAULT_SETTINGS };
    this.readSettings();
    model.on("msg:custom", this.receive);
    // `_settings` may arrive or change after the phone started: new calls and new samples use the new values.
    model.on("change:_settings", this.readSettings);
  }

  readSettings() {
    const { settings, problems } = readSettings(this.model.get("_settings"));
    for (const problem of problems) console.warn(`nbcall: ${problem}`);
    this.settings = settings;
  }

  /**
   * Send a message of `type` to the Python half. Messages without buffers that follow each other in one task
   * go as one batch, in order: each message costs the kernel a round of its own (busy/idle status, a loop turn).
   * @template {ToPythonType} K
   * @param {K} type @param {ToPythonFields[K]} fields @param {ArrayBuffer[]} [buffers]
   */
  tell(type, fields, buffers) {
    const message = { type, ...fields };
    if (buffers) {
      this.flush(); // keep the order: what was told before goes first
      this.model.send(message, undefined, buffers);
      return;
    }
    this.batch.push(message);
    if (LAZY.has(type)) {
      // Reports Python only logs and shows can wait for the next message that matters, or a moment: during
      // call setup each one sent alone would queue a kernel round ahead of the offer, answer or open channel.
      this.lazyTimer ||= setTimeout(() => this.flush(), LAZY_MS);
    } else if (!this.flushQueued) {
      this.flushQueued = true;
      queueMicrotask(() => this.flush());
    }
  }

  /** Send what tell() has batched so far. */
  flush() {
    clearTimeout(this.lazyTimer);
    this.lazyTimer = 0;
    this.flushQueued = false;
    const batch = this.batch;
    this.batch = [];
    if (batch.length === 1) this.model.send(batch[0]);
    else if (batch.length > 1) this.model.send({ type: "batch", messages: batch });
  }

  /**
   * A custom message from Python: act on it through its handler, or, when it is unknown or malformed,
   * log it with its type and leave it.
   * @param {unknown} content @param {DataView[]} [buffers]
   */
  receive(content, buffers = []) {
    const problem = validate("to_browser", content);
    if (problem) {
      const type = /** @type {{type?: unknown}} */ (content)?.type;
      console.warn(`nbcall: ignored a message from Python: ${problem}`, content);
      this.onProblem?.(typeof type === "string" ? type : String(type), problem, content);
      return;
    }
    const message = /** @type {ToBrowser[ToBrowserType]} */ (content);
    const handler = /** @type {(m: typeof message, b: DataView[]) => void} */ (this.handlers[message.type]);
    handler(message, buffers);
  }

  dispose() {
    this.flush();
    this.model.off("msg:custom", this.receive);
    this.model.off("change:_settings", this.readSettings);
  }
}
