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

/**
 * The phone's one camera-and-microphone stream, shared by all its peer links: opened by the first link that
 * needs it, stopped when the last one lets go (a room of five asks for the camera once, not four times, and
 * the camera light goes off when the last link closes).
 */
export class SharedMedia {
  /** @param {() => Promise<{stream: MediaStream | null, errors: MediaError[]}>} open asks for the devices */
  constructor(open) {
    this.open = open;
    /** The stream while some link holds it (null when nothing was granted). @type {MediaStream | null} */
    this.stream = null;
    /** The links that hold it. @type {Set<unknown>} */
    this.users = new Set();
    /** @type {Promise<{stream: MediaStream | null, errors: MediaError[]}> | null} */
    this.opening = null;
  }

  /**
   * The shared stream for `user`, opened if nobody holds it yet. Only the first holder gets the errors, so that
   * a missing camera is reported once, not once per member.
   * @param {unknown} user
   * @returns {Promise<{stream: MediaStream | null, errors: MediaError[]}>}
   */
  async acquire(user) {
    const first = !this.opening;
    this.users.add(user);
    const opening = (this.opening ??= this.open());
    const { stream, errors } = await opening;
    if (this.opening !== opening || !this.users.has(user)) {
      // Everyone let go while the browser asked: nobody holds these tracks now.
      if (this.opening !== opening) stream?.getTracks().forEach((t) => t.stop());
      return { stream: null, errors: [] };
    }
    this.stream = stream;
    return { stream, errors: first ? errors : [] };
  }

  /** `user` no longer needs the stream; the last one to let go stops every track. @param {unknown} user */
  release(user) {
    if (!this.users.delete(user) || this.users.size) return;
    this.stream?.getTracks().forEach((t) => t.stop());
    this.stream = null;
    this.opening = null;
  }

  /** Stop one track that no link can use and take it out of the stream. @param {MediaStreamTrack} track */
  drop(track) {
    track.stop();
    this.stream?.removeTrack(track);
  }
}
