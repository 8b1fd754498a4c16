// The sequence diagram's layout: which lanes each logged message joins, and marks for the state changes.
import assert from "node:assert/strict";
import { test } from "node:test";
import { MAX_ROWS, lanesOf, layout } from "./sequence.js";

/** @param {"in" | "out" | "event"} dir @param {string} type @param {unknown} [detail] */
const entry = (dir, type, detail = {}) => ({ t: 0, dir, type, size: 0, detail });

test("the browser's offer, answer and candidates cross every lane to the peer, and back", () => {
  assert.deepEqual(lanesOf(entry("out", "call", { to: "B" })), [0, 3]);
  assert.deepEqual(lanesOf(entry("in", "answer", { from: "B" })), [3, 0]);
  assert.deepEqual(lanesOf(entry("out", "ice", { to: "B" })), [0, 3]);
});

test("the kernel's own messages: to the server, or relayed to the peer", () => {
  assert.deepEqual(lanesOf(entry("out", "register", { from: "A" })), [1, 2]);
  assert.deepEqual(lanesOf(entry("in", "registered", { id: "A" })), [2, 1]);
  assert.deepEqual(lanesOf(entry("out", "hangup", { to: "B" })), [1, 3]);
  assert.deepEqual(lanesOf(entry("in", "hangup", { from: "B" })), [3, 1]);
  assert.deepEqual(lanesOf(entry("in", "joined", { id: "B" })), [2, 1]);
});

test("peer-connection events are marks on the browser's lane, with their value", () => {
  const plan = layout([entry("out", "call", { to: "B" }), entry("event", "connectionState", "connected")], "A", "B");
  assert.deepEqual(plan.lanes.map((l) => l.title), ["A browser", "A kernel", "signaling server", "B's side"]);
  const [arrow, mark] = plan.items;
  assert.equal(arrow.kind, "arrow");
  assert.equal(arrow.label, "call");
  assert.equal(mark.kind, "mark");
  assert.equal(mark.label, "connectionState: connected");
  assert.ok(mark.y > arrow.y, "one row per entry, in order");
  assert.ok(plan.height > mark.y);
});

test("only the latest entries are drawn, each keeping its index in the log", () => {
  const log = Array.from({ length: MAX_ROWS + 5 }, () => entry("out", "ice", { to: "B" }));
  const plan = layout(log, "A", "B");
  assert.equal(plan.items.length, MAX_ROWS);
  assert.equal(plan.items[0].index, 5);
});
