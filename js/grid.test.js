// Unit tests of the grid's choice of tiles (node --test).
import assert from "node:assert/strict";
import { test } from "node:test";
import { chooseTiles, hiddenText } from "./grid.js";

test("at most `limit` remote tiles, video senders first, each group in the room's order", () => {
  const members = ["me", ...Array.from({ length: 12 }, (_, i) => `m${i}`)];
  const video = new Set(["m11", "m3"]);
  const { shown, hidden } = chooseTiles(members, "me", (m) => video.has(m), 9);
  assert.deepEqual(shown, ["m0", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m11"]);
  assert.deepEqual(hidden, ["m8", "m9", "m10"]);
  assert.equal(hiddenText(hidden.length), "3 more members not shown (heard, not seen)");
  assert.equal(hiddenText(1), "1 more member not shown (heard, not seen)");
  assert.equal(hiddenText(0), "");
});

test("a small room shows everyone", () => {
  assert.deepEqual(chooseTiles(["a", "b", "c"], "b", () => false, 9), { shown: ["a", "c"], hidden: [] });
});
