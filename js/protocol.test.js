// The widget protocol is written once (nbcall/widget/widget_protocol.json): these tests check that the browser's
// handlers, what the browser sends, the doc's tables and validate() all agree with it.
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import { test } from "node:test";
import { DEFAULT_SETTINGS } from "./link.js";
import { FROM_PYTHON } from "./phone.js";
import { FINGERPRINT, MESSAGES, SETTINGS, fingerprint, spec, validate } from "./protocol.js";

const here = new URL(".", import.meta.url);
const sorted = (/** @type {Iterable<string>} */ names) => [...names].sort();

test("the browser handles exactly the messages Python may send it", () => {
  assert.deepEqual(sorted(Object.keys(FROM_PYTHON)), sorted(Object.keys(spec.to_browser)));
});

test("the browser sends exactly the messages Python handles (every tell() and the batch in the source)", () => {
  const sources = readdirSync(here).filter((f) => f.endsWith(".js") && !f.endsWith(".test.js"));
  const sent = new Set();
  for (const file of sources) {
    const text = readFileSync(new URL(file, here), "utf8");
    // tell("type", ...) is the only way to Python; link.js wraps batches as {type: "batch", ...}.
    for (const m of text.matchAll(/\btell\(\s*"(\w+)"/g)) sent.add(m[1]);
    for (const m of text.matchAll(/model\.send\(\{\s*type:\s*"(\w+)"/g)) sent.add(m[1]);
  }
  assert.deepEqual(sorted(sent), sorted(Object.keys(spec.to_python)));
});

test("docs/widget-protocol.md lists the same messages and settings as the JSON", () => {
  const doc = readFileSync(new URL("../docs/widget-protocol.md", here), "utf8");
  /** @param {string} heading */
  const names = (heading) => {
    const section = doc.split(/^## /m).find((s) => s.startsWith(heading)) ?? "";
    return sorted([...section.matchAll(/^\| `(\w+)` \|/gm)].map((m) => m[1]));
  };
  assert.deepEqual(names("Python to browser"), sorted(Object.keys(spec.to_browser)));
  assert.deepEqual(names("Browser to Python"), sorted(Object.keys(spec.to_python)));
  assert.deepEqual(names("Settings"), sorted(spec.settings));
});

test("every setting has a default for a Python half that gives none", () => {
  assert.deepEqual(sorted(Object.keys(DEFAULT_SETTINGS)), sorted(SETTINGS));
});

test("optional fields are told apart from required ones", () => {
  assert.deepEqual(MESSAGES.to_browser.get("remote"), {
    required: ["peer", "signal"],
    optional: ["ice_servers", "ice_transport_policy"],
  });
  assert.deepEqual(MESSAGES.to_python.get("hello"), { required: [], optional: ["page", "protocol"] });
});

test("a well-formed message passes, with or without its optional fields, extra fields allowed", () => {
  assert.equal(validate("to_browser", { type: "remote", peer: "B", signal: {} }), null);
  assert.equal(validate("to_browser", { type: "remote", peer: "B", signal: {}, ice_servers: [], extra: 1 }), null);
  assert.equal(validate("to_python", { type: "hello" }), null);
});

test("an unknown type is named, with the types that direction knows", () => {
  const problem = validate("to_browser", { type: "dial", peer: "B" });
  assert.match(problem ?? "", /unknown message type "dial"/);
  assert.match(problem ?? "", /start_call/);
  // A browser-to-Python type is unknown in the other direction.
  assert.match(validate("to_browser", { type: "hello" }) ?? "", /unknown message type "hello"/);
});

test("a missing required field is named", () => {
  assert.equal(validate("to_browser", { type: "accept" }), '"accept" message without its required field "peer"');
  assert.equal(
    validate("to_browser", { type: "remote" }),
    '"remote" message without its required fields "peer", "signal"',
  );
});

test("something that is not a typed object is refused", () => {
  for (const bad of [null, 3, "accept", [], { peer: "B" }, { type: 7 }]) {
    assert.notEqual(validate("to_browser", bad), null, JSON.stringify(bad));
  }
});

test("the fingerprint follows the protocol's content, as Python computes it", () => {
  assert.match(FINGERPRINT, /^[0-9a-f]{8}$/);
  assert.equal(fingerprint(spec), FINGERPRINT);
  assert.notEqual(fingerprint({ ...spec, to_python: { ...spec.to_python, hello: ["page?"] } }), FINGERPRINT);
  assert.equal(fingerprint({ a: "é" }), "d7b4fcd2"); // FNV-1a of the UTF-8 bytes of {"a":"é"}
});
