// The link to Python (node --test): batching per task, dispatch by type, unknown and malformed messages left
// alone and logged, settings from the `_settings` trait with today's constants as the fallback.
import assert from "node:assert/strict";
import { test } from "node:test";
import { DEFAULT_SETTINGS, Link, readSettings } from "./link.js";
import { onChanges } from "./model.js";

/**
 * A stand-in for the anywidget model: traits, listeners by event name, and what was sent.
 * @param {Record<string, unknown>} [traits]
 */
function fakeModel(traits = {}) {
  /** @type {Map<string, Set<(...args: never[]) => void>>} */
  const listeners = new Map();
  /** @type {{content: object, buffers?: unknown[]}[]} */
  const sent = [];
  const model = {
    sent,
    listeners,
    /** @param {string} name */
    get: (name) => /** @type {never} */ (traits[name]),
    /** @param {string} event @param {(...args: never[]) => void} cb */
    on(event, cb) {
      if (!listeners.has(event)) listeners.set(event, new Set());
      listeners.get(event)?.add(cb);
    },
    /** @param {string} event @param {(...args: never[]) => void} [cb] */
    off(event, cb) {
      if (cb) listeners.get(event)?.delete(cb);
      else listeners.delete(event);
    },
    /** @param {object} content @param {unknown} [_callbacks] @param {unknown[]} [buffers] */
    send(content, _callbacks, buffers) {
      sent.push(buffers ? { content, buffers } : { content });
    },
    /** @param {string} event @param {...unknown} args */
    fire(event, ...args) {
      for (const cb of listeners.get(event) ?? []) /** @type {(...a: unknown[]) => void} */ (cb)(...args);
    },
    /** @param {string} name @param {unknown} value */
    set(name, value) {
      traits[name] = value;
      model.fire(`change:${name}`);
    },
  };
  return model;
}

/** Handlers that record what they were given. */
function recorder() {
  /** @type {[string, unknown, DataView[]][]} */
  const calls = [];
  /** @param {string} type */
  const record = (type) => (/** @type {unknown} */ m, /** @type {DataView[]} */ b) => calls.push([type, m, b]);
  const handlers = {
    start_call: record("start_call"),
    remote: record("remote"),
    accept: record("accept"),
    close: record("close"),
    send: record("send"),
    send_part: record("send_part"),
    log: record("log"),
    history: record("history"),
    sdp: record("sdp"),
    diagnose: record("diagnose"),
    sfu_publish: record("sfu_publish"),
    sfu_remote: record("sfu_remote"),
    sfu_close: record("sfu_close"),
    relayed: record("relayed"),
  };
  return { calls, handlers };
}

const tick = () => new Promise((resolve) => setTimeout(resolve, 0));

test("messages told in one task go as one batch, in order", async () => {
  const model = fakeModel();
  const link = new Link(model, recorder().handlers);
  link.tell("rtc", { peer: "B", name: "signalingState", value: "stable" });
  link.tell("signal", { peer: "B", signal: { type: "ice", candidate: "{}" } });
  assert.equal(model.sent.length, 0); // nothing before the task ends
  await tick();
  assert.deepEqual(model.sent, [
    {
      content: {
        type: "batch",
        messages: [
          { type: "rtc", peer: "B", name: "signalingState", value: "stable" },
          { type: "signal", peer: "B", signal: { type: "ice", candidate: "{}" } },
        ],
      },
    },
  ]);
});

test("a lone message goes as itself, and a message with buffers first flushes what was told before it", async () => {
  const model = fakeModel();
  const link = new Link(model, recorder().handlers);
  link.tell("hello", {});
  await tick();
  link.tell("stats", { peer: "B", stats: /** @type {never} */ ({}) });
  const part = new ArrayBuffer(2);
  link.tell("message", { peer: "B", kind: "bytes", last: true }, [part]);
  await tick();
  assert.deepEqual(model.sent, [
    { content: { type: "hello" } },
    { content: { type: "stats", peer: "B", stats: {} } },
    { content: { type: "message", peer: "B", kind: "bytes", last: true }, buffers: [part] },
  ]);
});

test("reports Python only logs wait for the next message that matters, and go before it", async () => {
  const model = fakeModel();
  const link = new Link(model, recorder().handlers);
  link.tell("rtc", { peer: "B", name: "iceGatheringState", value: "gathering" });
  await tick();
  assert.equal(model.sent.length, 0); // a state report alone waits for company
  link.tell("signal", { peer: "B", signal: { type: "ice", candidate: "{}" } });
  await tick();
  assert.deepEqual(model.sent, [
    {
      content: {
        type: "batch",
        messages: [
          { type: "rtc", peer: "B", name: "iceGatheringState", value: "gathering" },
          { type: "signal", peer: "B", signal: { type: "ice", candidate: "{}" } },
        ],
      },
    },
  ]);
});

test("a report with no company goes on its own after a moment", async () => {
  const model = fakeModel();
  const link = new Link(model, recorder().handlers);
  link.tell("rtc", { peer: "B", name: "connectionState", value: "failed" });
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.deepEqual(model.sent, [{ content: { type: "rtc", peer: "B", name: "connectionState", value: "failed" } }]);
});

test("a message from Python reaches the handler of its type, with its buffers", () => {
  const model = fakeModel();
  const { calls, handlers } = recorder();
  new Link(model, handlers);
  const buffer = new DataView(new ArrayBuffer(1));
  model.fire("msg:custom", { type: "send", id: 1, kind: "str" }, [buffer]);
  model.fire("msg:custom", { type: "close", peer: "B" });
  assert.deepEqual(calls, [
    ["send", { type: "send", id: 1, kind: "str" }, [buffer]],
    ["close", { type: "close", peer: "B" }, []],
  ]);
});

test("an unknown or malformed message is not acted on, and is reported with its type", (t) => {
  const warn = t.mock.method(console, "warn", () => {});
  const model = fakeModel();
  const { calls, handlers } = recorder();
  /** @type {[string, string][]} */
  const problems = [];
  new Link(model, handlers, { onProblem: (type, problem) => problems.push([type, problem]) });
  model.fire("msg:custom", { type: "dial", peer: "B" });
  model.fire("msg:custom", { type: "accept" });
  model.fire("msg:custom", "accept");
  assert.deepEqual(calls, []);
  assert.deepEqual(problems.map(([type]) => type), ["dial", "accept", "undefined"]);
  assert.match(problems[1][1], /required field "peer"/);
  assert.equal(warn.mock.callCount(), 3);
  assert.match(String(warn.mock.calls[0].arguments[0]), /unknown message type "dial"/);
});

test("settings come from the _settings trait and follow its changes", () => {
  const model = fakeModel({ _settings: { ...DEFAULT_SETTINGS, max_log: 7 } });
  const link = new Link(model, recorder().handlers);
  assert.equal(link.settings.max_log, 7);
  model.set("_settings", { ...DEFAULT_SETTINGS, part_size: 1024 });
  assert.equal(link.settings.part_size, 1024);
  assert.equal(link.settings.max_log, 500);
  link.dispose();
  assert.equal(model.listeners.get("msg:custom")?.size, 0);
  assert.equal(model.listeners.get("change:_settings")?.size, 0);
});

test("without _settings (today's Python) the browser uses the constants both halves had", () => {
  for (const missing of [undefined, null, {}]) {
    const { settings, problems } = readSettings(missing);
    assert.deepEqual(settings, {
      max_log: 500,
      max_chat: 200,
      stats_interval_ms: 1000,
      stats_history: 60,
      frame_size: 65536,
      high_water: 1048576,
      part_size: 4194304,
      max_receive_size: 536870912,
      max_tiles: 9,
    });
    assert.deepEqual(problems, []);
  }
});

test("a setting missing or not a positive number falls back to its default, and says so", () => {
  const { settings, problems } = readSettings({ ...DEFAULT_SETTINGS, frame_size: -1, high_water: undefined });
  assert.equal(settings.frame_size, 65536);
  assert.equal(settings.high_water, 1048576);
  assert.deepEqual(problems, ['setting "frame_size" is -1: using 65536', 'setting "high_water" is undefined: using 1048576']);
});

test("onChanges listens to each trait with its own model.on call (marimo takes one name per call)", () => {
  const model = fakeModel();
  let n = 0;
  const off = onChanges(model, ["mic_on", "camera_on"], () => n++);
  assert.deepEqual([...model.listeners.keys()], ["change:mic_on", "change:camera_on"]);
  model.set("mic_on", false);
  model.set("camera_on", false);
  assert.equal(n, 2);
  off();
  model.set("mic_on", true);
  assert.equal(n, 2);
});
