// The SDP panel's pure parts: rows grouped by section, column titles, the answer's choices in words.
import assert from "node:assert/strict";
import { test } from "node:test";
import { choiceText, columnRows, columnTitle, rememberSdp, SDP_EVENT } from "./sdp-panel.js";

const offer = {
  type: "offer",
  sections: [{ title: "m=application (mid 0)" }],
  lines: [
    { n: 1, text: "v=0", section: "session", meaning: "SDP version: always 0" },
    { n: 2, text: "s=-", section: "session", meaning: "session name" },
    { n: 3, text: "m=application 9 UDP/DTLS/SCTP webrtc-datachannel", section: "m=application (mid 0)", meaning: "data" },
    { n: 4, text: "a=mid:0", section: "m=application (mid 0)", meaning: "media ID 0" },
  ],
};

test("a column has a heading row where each section starts, then that section's lines", () => {
  const rows = columnRows(offer);
  assert.deepEqual(
    rows.map((r) => ("section" in r ? `# ${r.section}` : r.line.n)),
    ["# session", 1, 2, "# m=application (mid 0)", 3, 4],
  );
  assert.deepEqual(columnRows(null), []);
});

test("columns are titled by side and description type, or say nothing came yet", () => {
  assert.equal(columnTitle("local", offer, "B"), "offer from this phone");
  assert.equal(columnTitle("remote", { ...offer, type: "answer" }, "B"), "answer from B");
  assert.equal(columnTitle("remote", null, "B"), "B: nothing received yet");
});

test("each choice reads as one sentence", () => {
  const choice = {
    mid: "0", kind: "application", offered: [], accepted: [], direction: "sendrecv -> sendrecv",
    dtls: "the answerer is the DTLS client", note: "the data channel: messages up to 262144 bytes each way",
  };
  assert.equal(
    choiceText(choice),
    "application (mid 0): the data channel: messages up to 262144 bytes each way; sendrecv -> sendrecv; " +
      "the answerer is the DTLS client",
  );
});

test("an explanation from Python is kept and announced to the views", () => {
  const phone = new EventTarget();
  /** @type {unknown[]} */
  const seen = [];
  phone.addEventListener(SDP_EVENT, (e) => seen.push(/** @type {CustomEvent} */ (e).detail));
  /** @type {import("./sdp-panel.js").SdpMessage} */
  const message = { type: "sdp", peer: "B", local: offer, remote: null, choices: [] };
  rememberSdp(phone, message);
  assert.deepEqual(seen, [message]);
});
