// The camera and microphone: getUserMedia with a fallback per device and errors as objects Python understands,
// enabling or disabling tracks as `mic_on`/`camera_on` say, and the media report of which media flow each way.

/** @type {readonly ("audio" | "video")[]} */
export const MEDIA_KINDS = ["audio", "video"];

/**
 * @typedef {import("./protocol.js").MediaError} MediaError
 * @typedef {import("./protocol.js").MediaFlags} MediaFlags
 * @typedef {Partial<Record<"audio" | "video", boolean | MediaTrackConstraints>>} Wanted
 * @typedef {Pick<MediaDevices, "getUserMedia">} Devices
 * A stream as far as the report needs it (a MediaStream, or a stand-in in tests).
 * @typedef {{getTracks(): {kind: string}[]}} TrackHolder
 */

/**
 * Ask for the media in `wanted`. A refusal or a missing device becomes an error object and the rest goes on:
 * returns the stream (null when nothing was granted) and the errors, one per medium not granted.
 * @param {Wanted} wanted
 * @param {Devices | undefined} devices navigator.mediaDevices (undefined outside secure contexts)
 * @param {() => MediaStream} [newStream] makes the stream that gathers tracks got one by one
 * @returns {Promise<{stream: MediaStream | null, errors: MediaError[]}>}
 */
export async function openMedia(wanted, devices, newStream = () => new MediaStream()) {
  const kinds = MEDIA_KINDS.filter((kind) => wanted[kind]);
  /** @type {MediaError[]} */
  const errors = [];
  if (!kinds.length) return { stream: null, errors };
  if (!devices?.getUserMedia) {
    // Browsers hide mediaDevices on pages that are not secure contexts (not https, not localhost).
    const message = "navigator.mediaDevices is undefined";
    for (const kind of kinds) errors.push({ kind, name: "InsecureContext", message });
    return { stream: null, errors };
  }
  try {
    return { stream: await devices.getUserMedia(wanted), errors };
  } catch (err) {
    // Refused is refused: asking again per device would only show the user more prompts.
    if (kinds.length === 1 || errorName(err) === "NotAllowedError") {
      return { stream: null, errors: kinds.map((kind) => mediaError(kind, err)) };
    }
  }
  // Both at once failed: try each alone, so that a missing camera still leaves the microphone.
  const stream = newStream();
  for (const kind of kinds) {
    try {
      const one = await devices.getUserMedia({ [kind]: wanted[kind] });
      one.getTracks().forEach((t) => stream.addTrack(t));
    } catch (err) {
      errors.push(mediaError(kind, err));
    }
  }
  return { stream: stream.getTracks().length ? stream : null, errors };
}

/**
 * Enable or disable the tracks of `stream`: a disabled track sends silence or black frames.
 * @param {{getTracks(): {kind: string, enabled: boolean}[]} | null} stream
 * @param {{mic_on: boolean, camera_on: boolean}} on
 */
export function setEnabled(stream, on) {
  for (const track of stream?.getTracks() ?? []) track.enabled = track.kind === "audio" ? on.mic_on : on.camera_on;
}

/**
 * Which media flow: a kind is true when any of the streams has a track of it.
 * @param {(TrackHolder | null)[]} streams
 * @returns {MediaFlags}
 */
export function mediaFlags(streams) {
  /** @param {string} kind */
  const has = (kind) => streams.some((s) => s?.getTracks().some((t) => t.kind === kind) ?? false);
  return { audio: has("audio"), video: has("video") };
}

/**
 * The `media` message's content: what we send, what we receive, and why a wanted medium is missing.
 * @param {(TrackHolder | null)[]} local @param {(TrackHolder | null)[]} remote @param {MediaError[]} [errors]
 */
export function mediaReport(local, remote, errors = []) {
  return { local: mediaFlags(local), remote: mediaFlags(remote), errors };
}

/** @param {string} kind @param {unknown} err @returns {MediaError} */
export function mediaError(kind, err) {
  const e = /** @type {{name?: unknown, message?: unknown} | null} */ (err);
  const message = typeof e?.message === "string" ? e.message : String(err);
  return { kind, name: errorName(err) ?? "Error", message };
}

/** @param {unknown} err */
function errorName(err) {
  const name = /** @type {{name?: unknown} | null} */ (err)?.name;
  return typeof name === "string" ? name : undefined;
}
