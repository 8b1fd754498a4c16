// Camera and microphone (node --test, with stand-in devices): the fallback per device, the error objects,
// enabling tracks, and the media report.
import assert from "node:assert/strict";
import { test } from "node:test";
import { mediaError, mediaReport, openMedia, setEnabled } from "./media.js";

/** @param {string} kind */
const track = (kind) => ({ kind, enabled: true, stopped: false });

/** A stream stand-in: tracks, addTrack, getTracks. @param {{kind: string}[]} [tracks] */
function stream(tracks = []) {
  return { tracks, getTracks: () => tracks, addTrack: (/** @type {{kind: string}} */ t) => void tracks.push(t) };
}

/** Devices that grant the kinds in `have` and fail otherwise with `error` (a DOMException-like name). */
function devices(/** @type {string[]} */ have, error = "NotFoundError") {
  /** @type {object[]} */
  const asked = [];
  return {
    asked,
    /** @param {MediaStreamConstraints} constraints */
    async getUserMedia(constraints) {
      asked.push(constraints);
      const kinds = Object.keys(constraints);
      if (!kinds.every((k) => have.includes(k))) throw Object.assign(new Error(`no ${kinds}`), { name: error });
      return /** @type {MediaStream} */ (/** @type {unknown} */ (stream(kinds.map(track))));
    },
  };
}

const newStream = () => /** @type {MediaStream} */ (/** @type {unknown} */ (stream()));

test("nothing wanted: no prompt, no stream, no error", async () => {
  const d = devices(["audio", "video"]);
  assert.deepEqual(await openMedia({ audio: false }, d, newStream), { stream: null, errors: [] });
  assert.equal(d.asked.length, 0);
});

test("both granted at once in one prompt", async () => {
  const d = devices(["audio", "video"]);
  const { stream: s, errors } = await openMedia({ audio: true, video: { width: 320 } }, d, newStream);
  assert.deepEqual(s?.getTracks().map((t) => t.kind), ["audio", "video"]);
  assert.deepEqual(errors, []);
  assert.deepEqual(d.asked, [{ audio: true, video: { width: 320 } }]);
});

test("a missing camera still leaves the microphone: each device is asked for alone", async () => {
  const d = devices(["audio"]);
  const { stream: s, errors } = await openMedia({ audio: true, video: true }, d, newStream);
  assert.deepEqual(s?.getTracks().map((t) => t.kind), ["audio"]);
  assert.deepEqual(errors, [{ kind: "video", name: "NotFoundError", message: "no video" }]);
  assert.deepEqual(d.asked, [{ audio: true, video: true }, { audio: true }, { video: true }]);
});

test("a refusal is not asked again per device", async () => {
  const d = devices([], "NotAllowedError");
  const { stream: s, errors } = await openMedia({ audio: true, video: true }, d, newStream);
  assert.equal(s, null);
  assert.deepEqual(errors.map((e) => [e.kind, e.name]), [["audio", "NotAllowedError"], ["video", "NotAllowedError"]]);
  assert.equal(d.asked.length, 1);
});

test("nothing granted: no stream, an error per medium", async () => {
  const { stream: s, errors } = await openMedia({ audio: true, video: true }, devices([]), newStream);
  assert.equal(s, null);
  assert.deepEqual(errors.map((e) => e.kind), ["audio", "video"]);
});

test("no mediaDevices (not a secure context) is an error per medium, named InsecureContext", async () => {
  const { errors } = await openMedia({ video: true }, undefined, newStream);
  assert.deepEqual(errors, [{ kind: "video", name: "InsecureContext", message: "navigator.mediaDevices is undefined" }]);
});

test("mic_on and camera_on enable the tracks of their kind", () => {
  const tracks = [track("audio"), track("video")];
  setEnabled({ getTracks: () => tracks }, { mic_on: false, camera_on: true });
  assert.deepEqual(tracks.map((t) => t.enabled), [false, true]);
  setEnabled(null, { mic_on: true, camera_on: true }); // no stream: nothing to do
});

test("the report says which media flow each way, over every stream", () => {
  const report = mediaReport([stream([track("audio")]), null], [stream([track("video")]), stream([track("audio")])]);
  assert.deepEqual(report, { local: { audio: true, video: false }, remote: { audio: true, video: true }, errors: [] });
  assert.deepEqual(mediaReport([], []).local, { audio: false, video: false });
});

test("an error object keeps the exception's name and message; anything else becomes Error", () => {
  assert.deepEqual(mediaError("video", Object.assign(new Error("busy"), { name: "NotReadableError" })), {
    kind: "video", name: "NotReadableError", message: "busy",
  });
  assert.deepEqual(mediaError("audio", "gone"), { kind: "audio", name: "Error", message: "gone" });
});
