// The widget protocol's names and fields, read from the one JSON file both halves load
// (nbcall/widget/widget_protocol.json; meaning in docs/widget-protocol.md), and validate() to check a message against it.
// The typedefs below give each message its field types; the JSON stays the source of which fields exist.

import spec from "../nbcall/widget/widget_protocol.json" with { type: "json" };

export { spec };

/**
 * @typedef {"to_browser" | "to_python"} Direction
 * @typedef {keyof typeof spec.to_browser} ToBrowserType
 * @typedef {keyof typeof spec.to_python} ToPythonType
 * @typedef {import("./framing.js").Kind} Kind
 * @typedef {{audio: boolean, video: boolean}} MediaFlags
 * @typedef {{kind: string, name: string, message: string}} MediaError
 * @typedef {{t: number, dir: "in" | "out" | "event", type: string, size: number, detail: unknown}} LogEntry
 * A signaling message relayed by the server (W3C names: the SDP and candidate as JSON strings).
 * `polite: false` says the peer never rolls back an offer in glare (a Python peer): the browser is then polite.
 * @typedef {{type: string, from?: string, sdp?: string, candidate?: string, framing?: string,
 *   framing_ext?: string[], polite?: boolean}} Signal
 */

/**
 * What Python sends, by type.
 * @typedef {{
 *   start_call: {type: "start_call", peer: string, ice_servers: RTCIceServer[], ice_transport_policy?: RTCIceTransportPolicy},
 *   remote: {
 *     type: "remote", peer: string, signal: Signal, ice_servers?: RTCIceServer[],
 *     ice_transport_policy?: RTCIceTransportPolicy,
 *   },
 *   accept: {type: "accept", peer: string},
 *   close: {type: "close", peer: string},
 *   send: {type: "send", id: number | string, kind: Kind, to?: string, size?: number},
 *   send_part: {type: "send_part", id: number | string},
 *   log: {type: "log", entry: LogEntry},
 *   history: {type: "history", log: LogEntry[]},
 *   sdp: import("./sdp-panel.js").SdpMessage,
 *   diagnose: import("./diagnose.js").DiagnoseMessage,
 *   sfu_publish: {type: "sfu_publish", peer: string, room: string, ice_servers: RTCIceServer[], ice_transport_policy?: RTCIceTransportPolicy},
 *   sfu_remote: {
 *     type: "sfu_remote", peer: string, role: string, signal: Signal, feeds?: Record<string, string>,
 *     streams?: import("./sfu.js").Stream[], ice_servers?: RTCIceServer[], ice_transport_policy?: RTCIceTransportPolicy,
 *   },
 *   sfu_close: {type: "sfu_close", peer: string},
 *   relayed: {type: "relayed", dir: "in" | "out", peer: string, kind: Kind, size: number},
 * }} ToBrowser
 */

/**
 * What the browser sends, by type (without the `type` field, which tell() adds).
 * @typedef {{
 *   hello: {page?: string, protocol?: string},
 *   bye: {page: string},
 *   batch: {messages: Record<string, unknown>[]},
 *   signal: {peer: string, signal: Signal},
 *   rtc: {peer: string, name: string, value: unknown},
 *   channel: {peer: string, state: "open" | "closed", label: string, framed?: boolean},
 *   message: {peer: string, kind: Kind, last: boolean, first?: boolean},
 *   sent: {id: number | string, done: number},
 *   send_failed: {id: number | string, message: string},
 *   progress: import("./progress.js").Report,
 *   stats: {peer: string, stats: import("./stats.js").StatsSummary | import("./stats.js").SfuSummary | import("./stats.js").FeedSummary},
 *   media: {local: MediaFlags, remote: MediaFlags, errors: MediaError[]},
 *   failure: {peer?: string, message: string},
 *   dropped: {peer: string, problem: string},
 *   ui: {action: string, peer?: string},
 *   diagnosis: {id: string, report: import("./diagnose.js").Report},
 *   sfu_signal: {role: string, signal: Signal},
 *   sfu_rtc: {role: string, name: string, value: unknown},
 *   sfu_view: {video: string[]},
 * }} ToPythonFields
 */

// Compile-time checks that the typedefs above name every message of the JSON (tsc fails on a missing one).
/** @typedef {ToBrowser[ToBrowserType]} _EveryToBrowserTyped */
/** @typedef {ToPythonFields[ToPythonType]} _EveryToPythonTyped */

/** @typedef {{required: string[], optional: string[]}} Fields */

/**
 * The fields of each message type, split into required and optional ("name?" in the JSON).
 * @param {Record<string, string[]>} table
 * @returns {Map<string, Fields>}
 */
function fieldsOf(table) {
  return new Map(
    Object.entries(table).map(([type, names]) => [
      type,
      {
        required: names.filter((n) => !n.endsWith("?")),
        optional: names.filter((n) => n.endsWith("?")).map((n) => n.slice(0, -1)),
      },
    ]),
  );
}

/** @type {Record<Direction, Map<string, Fields>>} */
export const MESSAGES = {
  to_browser: fieldsOf(spec.to_browser),
  to_python: fieldsOf(spec.to_python),
};

/**
 * FNV-1a (32 bits, hex) of the protocol as compact JSON in UTF-8, as nbcall/widget/widget_protocol.py computes
 * it: the hello says it, so that Python tells a page built from another protocol (a stale bundle) at once.
 * @param {unknown} value @returns {string}
 */
export function fingerprint(value) {
  let hash = 0x811c9dc5;
  for (const byte of new TextEncoder().encode(JSON.stringify(value))) {
    hash = Math.imul(hash ^ byte, 0x01000193) >>> 0;
  }
  return hash.toString(16).padStart(8, "0");
}

/** This bundle's protocol fingerprint. */
export const FINGERPRINT = fingerprint(spec);

/** The names of the settings Python gives in the `_settings` trait. */
export const SETTINGS = /** @type {readonly string[]} */ (spec.settings);

/**
 * Check a message against the protocol: returns what is wrong with it (for the log), or null when it is fine.
 * Extra fields are allowed, so that either half can grow a field before the other reads it.
 * @param {Direction} direction
 * @param {unknown} message
 * @returns {string | null}
 */
export function validate(direction, message) {
  if (message === null || typeof message !== "object" || Array.isArray(message)) {
    return `a message must be a JSON object, not ${JSON.stringify(message)}`;
  }
  const type = /** @type {Record<string, unknown>} */ (message).type;
  if (typeof type !== "string") return `a message must have a string "type", not ${JSON.stringify(type)}`;
  const fields = MESSAGES[direction].get(type);
  if (!fields) {
    return `unknown message type "${type}" (${direction} knows ${[...MESSAGES[direction].keys()].join(", ")})`;
  }
  const missing = fields.required.filter((name) => !(name in message));
  if (missing.length) {
    const names = missing.map((n) => `"${n}"`).join(", ");
    return `"${type}" message without its required field${missing.length > 1 ? "s" : ""} ${names}`;
  }
  return null;
}
