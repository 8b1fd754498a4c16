// Pure text and geometry for the view (no DOM, tested in node): the signaling-message pretty-printer, the
// values shown in log rows, the statistics table's rows, times, byte previews and sparkline points.

/**
 * @typedef {import("./stats.js").RtpSummary} RtpSummary
 * @typedef {import("./stats.js").CandidateSummary} CandidateSummary
 */

/** The status line for each call state; {peer} is replaced by the peer's ID. */
export const STATE_TEXT = /** @type {Readonly<Record<string, string>>} */ ({
  idle: "Ready",
  calling: "Calling {peer}…",
  ringing: "{peer} is calling you",
  connecting: "Connecting to {peer}…",
  connected: "In a call with {peer}",
  ended: "Call ended",
  failed: "Call failed",
});

/**
 * The status line of a phone closed for good while its widget stays on screen (a new phone took its ID).
 * @param {string} user @param {string} why its error, such as "replaced by a new phone"
 */
export function closedText(user, why) {
  return `This phone is closed${why ? ` (${why})` : ""}: use the new ${user} phone`;
}

/** @param {string} state @param {string} peer */
export function statusText(state, peer) {
  return (STATE_TEXT[state] ?? state).replace("{peer}", peer);
}

/**
 * The status line in a room, or while one is being made or offered; null outside rooms (statusText then).
 * A phone calling nobody in particular (`peer` empty) is inviting into a new room; one calling a peer is in a
 * 1:1 call.
 * @param {{state: string, user: string, peer?: string, room: string, members: string[], invitation: {from?: string, members?: string[]}}} s
 * @returns {string | null}
 */
export function roomStatusText({ state, user, peer = "", room, members, invitation }) {
  if (state === "ringing" && invitation.from) {
    const others = (invitation.members ?? []).filter((m) => m !== user);
    return `${invitation.from} invites you into a room with ${others.join(", ") || invitation.from}`;
  }
  if (!room) return state === "calling" && !peer ? "Inviting… the room starts when someone accepts" : null;
  const others = members.filter((m) => m !== user);
  if (!others.length) return "In a room of your own: waiting for an invitee to accept";
  return `In a room with ${others.join(", ")} (${members.length} members)`;
}

/**
 * Show a signaling message the way a learner wants it: the SDP and candidate unwrapped from the JSON strings
 * they travel as, and the SDP's lines below the message rather than one escaped string.
 * @param {unknown} detail
 * @returns {string}
 */
export function describe(detail) {
  if (detail == null || typeof detail !== "object") return String(detail ?? "");
  // A list (the ICE servers' URLs) as a list: spreading it into an object would show {"0": ...}.
  if (Array.isArray(detail)) return JSON.stringify(detail, null, 2);
  /** @type {Record<string, unknown>} */
  const shown = { ...detail };
  for (const key of ["sdp", "candidate"]) {
    const value = shown[key];
    if (typeof value !== "string") continue;
    try {
      shown[key] = JSON.parse(value);
    } catch {
      // not JSON: show the string as it is
    }
  }
  const description = /** @type {{type?: unknown, sdp?: unknown} | null | undefined} */ (shown.sdp);
  if (description && typeof description === "object" && typeof description.sdp === "string") {
    const text = JSON.stringify({ ...shown, sdp: { type: description.type, sdp: "(below)" } }, null, 2);
    return `${text}\n\n${description.sdp.trim()}`;
  }
  return JSON.stringify(shown, null, 2);
}

/**
 * The value an event's log row shows: a state, a list (the ICE servers: "none" when empty), a channel's label.
 * @param {unknown} detail
 * @returns {string}
 */
export function eventValue(detail) {
  if (Array.isArray(detail)) return detail.length ? detail.join(", ") : "none";
  if (typeof detail === "string") return detail;
  const label = /** @type {{label?: unknown} | null | undefined} */ (detail)?.label;
  return label == null ? "" : String(label);
}

/**
 * The size column of a log row: events show their value, messages their size on the wire.
 * @param {import("./protocol.js").LogEntry} entry
 */
export function logSize(entry) {
  if (entry.dir === "event") return eventValue(entry.detail);
  return entry.size ? `${entry.size} B` : "";
}

/** A log time (epoch seconds) as UTC hours to milliseconds, "12:34:56.789". @param {number} seconds */
export function logTime(seconds) {
  return new Date(seconds * 1000).toISOString().slice(11, 23);
}

/**
 * Rows of the statistics table for one inbound-rtp or outbound-rtp summary.
 * @param {string} label @param {RtpSummary | null | undefined} r
 * @returns {[string, string | undefined][]}
 */
export function rtpRows(label, r) {
  if (!r) return [];
  const parts = [`${r.kbps ?? "…"} kbit/s`, `${r.packets} packets`];
  if (r.packets_lost != null) parts.push(`${r.packets_lost} lost`);
  if (r.jitter_ms != null) parts.push(`jitter ${r.jitter_ms} ms`);
  if (r.frames != null) parts.push(`${r.frames} frames`, `${r.fps ?? 0} fps`);
  if (r.width) parts.push(`${r.width}×${r.height}`);
  if (r.audio_level != null) parts.push(`level ${r.audio_level.toFixed(2)}`);
  return [[label, parts.join(", ")]];
}

/**
 * The statistics panel's rows for what came from each member through the SFU's subscriber link.
 * @param {Record<string, import("./stats.js").FeedSummary>} feeds by member
 * @returns {[string, string | undefined][]}
 */
export function feedRows(feeds) {
  return Object.entries(feeds).flatMap(([member, f]) => [
    /** @type {[string, string | undefined]} */ ([`feed from ${member}`, `data ${f.bytes_received} bytes in ${f.messages_received} messages`]),
    ...rtpRows(`audio from ${member}`, f.audio_in),
    ...rtpRows(`video from ${member}`, f.video_in),
  ]);
}

/** @param {CandidateSummary | null | undefined} c */
export function candidateText(c) {
  return c ? `${c.type} ${c.protocol} ${c.address}:${c.port}` : undefined;
}

/**
 * A binary message in the chat: its size and first 16 bytes in hex.
 * @param {Uint8Array} bytes the message, or at least its start @param {number} [size] its whole size
 */
export function previewBytes(bytes, size = bytes.length) {
  const head = Array.from(bytes.subarray(0, 16), (b) => b.toString(16).padStart(2, "0")).join(" ");
  return `${size} bytes: ${head}${size > 16 ? " …" : ""}`;
}

/**
 * The polyline points of one sparkline series in a width × height box, scaled so that `max` touches the top;
 * the newest sample at the right edge, null samples left out.
 * @param {(number | null | undefined)[]} points @param {number} max @param {number} width @param {number} height
 * @returns {string}
 */
export function sparkPoints(points, max, width, height) {
  const step = width / Math.max(1, points.length - 1);
  return points
    .map((v, j) => (v == null ? null : `${j * step},${height - 1 - (v / max) * (height - 2)}`))
    .filter((p) => p !== null)
    .join(" ");
}

/** @param {number} n bytes @returns {string} */
export function bytesText(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}

/**
 * A transfer under way, as the widget shows it: "↓ a.bin from B: 12.0 of 50.0 MiB · 8.1 MiB/s · 5 s left".
 * @param {import("./progress.js").Report} r
 */
export function progressText(r) {
  const what = r.name ?? "a message";
  const way = r.direction === "in" ? `↓ ${what} from ${r.peer}` : `↑ ${what}${r.peer ? ` to ${r.peer}` : ""}`;
  const amount = r.total === null ? bytesText(r.done) : `${bytesText(r.done)} of ${bytesText(r.total)}`;
  const left = r.eta === null ? "" : ` · ${r.eta < 1 ? "<1" : Math.round(r.eta)} s left`;
  return `${way}: ${amount} · ${bytesText(r.rate)}/s${left}`;
}
