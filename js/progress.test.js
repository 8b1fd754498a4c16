// Transfer progress (node --test, with a clock the test moves): rate, time left, files followed across
// their messages, and reports to Python kept to a few a second.
import assert from "node:assert/strict";
import { test } from "node:test";
import { PROGRESS_MIN, Transfers, fileControl } from "./progress.js";

const MiB = 1024 * 1024;
const json = (/** @type {unknown} */ v) => new TextEncoder().encode(JSON.stringify(v));
/** A whole small message as message() takes it: its size and itself. @param {Uint8Array} b @returns {[number, Uint8Array]} */
const sized = (b) => [b.length, b];

function setup() {
  const clock = { t: 0 };
  /** @type {(import("./progress.js").Report | null)[]} */
  const shown = [];
  /** @type {import("./progress.js").Report[]} */
  const told = [];
  const transfers = new Transfers((r) => shown.push(r), (r) => told.push(r), () => clock.t);
  return { clock, shown, told, transfers };
}

test("a large message arriving: bytes done, rate and time left, then nothing shown once it is whole", () => {
  const { clock, shown, told, transfers } = setup();
  clock.t = 1000;
  transfers.partial("in", "B", 1 * MiB, 4 * MiB);
  clock.t = 2000;
  transfers.partial("in", "B", 2 * MiB, 4 * MiB);
  const mid = shown.at(-1);
  assert.equal(mid?.done, 2 * MiB);
  assert.equal(mid?.rate, 2 * MiB); // 2 MiB in the second since the first frame
  assert.equal(mid?.eta, 1);
  clock.t = 3000;
  assert.equal(transfers.message("in", "B", "bytes", 4 * MiB, new Uint8Array(0)), "message");
  assert.equal(shown.at(-1), null);
  assert.deepEqual(told.map((r) => r.done), [1 * MiB, 2 * MiB, 4 * MiB]);
  assert.equal(told.at(-1)?.eta, 0);
});

test("small messages report nothing; a length not announced leaves the time left unknown", () => {
  const { shown, transfers } = setup();
  transfers.partial("in", "B", 1000, 2000);
  assert.equal(transfers.message("in", "B", "str", 2000, new Uint8Array(0)), "message");
  assert.equal(shown.length, 0);
  transfers.partial("in", "B", 2 * MiB, null);
  assert.equal(shown.at(-1)?.eta, null);
});

test("reports to Python come at most every 100 ms, and the last one always", () => {
  const { clock, told, transfers } = setup();
  for (let i = 1; i <= 10; i++) {
    clock.t = i * 10;
    transfers.partial("out", "B", i * MiB, 10 * MiB);
  }
  assert.deepEqual(told.map((r) => r.done), [1 * MiB, 10 * MiB]);
});

test("a file is followed across its start, chunks and end; its chat shows one row and the verdict", () => {
  const { clock, shown, transfers } = setup();
  const start = transfers.message("out", "B", "json", ...sized(json({ nbcall_file: "start", id: "f1", name: "a.bin", size: 3 * MiB })));
  assert.deepEqual(start, { file: "a.bin", size: 3 * MiB });
  clock.t = 1000;
  assert.equal(transfers.message("out", "B", "bytes", MiB, new Uint8Array(0)), "hidden");
  transfers.partial("out", "B", MiB / 2, MiB);
  assert.deepEqual([shown.at(-1)?.name, shown.at(-1)?.done, shown.at(-1)?.total], ["a.bin", 1.5 * MiB, 3 * MiB]);
  transfers.message("out", "B", "bytes", MiB, new Uint8Array(0));
  transfers.message("out", "B", "bytes", MiB, new Uint8Array(0));
  assert.equal(transfers.message("out", "B", "json", ...sized(json({ nbcall_file: "end", id: "f1", sha256: "00" }))), "hidden");
  assert.equal(shown.at(-1), null);
  const verdict = transfers.message("in", "B", "json", ...sized(json({ nbcall_file: "verdict", id: "f1", ok: false, error: "checksum mismatch" })));
  assert.deepEqual(verdict, { file: "a.bin", ok: false, error: "checksum mismatch" });
  // Bytes after the end are a message of their own again.
  assert.equal(transfers.message("out", "B", "bytes", 3, new Uint8Array(0)), "message");
});

test("a resumed file starts where its from says, and its rate counts only the bytes that travel", () => {
  const { clock, shown, transfers } = setup();
  transfers.message("in", "B", "json", ...sized(json({ nbcall_file: "start", id: "f2", name: "b.bin", size: 4 * MiB, resume: true })));
  assert.equal(transfers.message("out", "B", "json", ...sized(json({ nbcall_file: "offset", id: "f2", offset: 3 * MiB, sha256: "ab" }))), "hidden");
  clock.t = 500;
  assert.equal(transfers.message("in", "B", "json", ...sized(json({ nbcall_file: "from", id: "f2", offset: 3 * MiB }))), "hidden");
  assert.equal(shown.at(-1)?.done, 3 * MiB);
  clock.t = 1500;
  transfers.message("in", "B", "bytes", MiB / 2, new Uint8Array(0));
  assert.deepEqual([shown.at(-1)?.done, shown.at(-1)?.rate], [3.5 * MiB, MiB / 2]);
  assert.equal(transfers.message("in", "B", "json", ...sized(json({ nbcall_file: "cancel", id: "f2", error: "x" }))), "hidden");
  assert.equal(shown.at(-1), null);
});

test("only nbcall file messages are file steps", () => {
  assert.equal(fileControl(json({ hello: 1 })), null);
  assert.equal(fileControl(new TextEncoder().encode("not json")), null);
  assert.equal(fileControl(json({ nbcall_file: "start", name: "x" })), null); // no size
  assert.equal(PROGRESS_MIN, MiB);
});
