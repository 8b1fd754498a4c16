import assert from "node:assert/strict";
import { test } from "node:test";
import { summarizeFeeds, summarizeReports } from "./stats.js";

/** A getStats() report of a call sending and receiving audio and video over a host pair. @param {number} scale */
function report(scale) {
  const list = [
    { id: "T", type: "transport", selectedCandidatePairId: "P" },
    { id: "P", type: "candidate-pair", localCandidateId: "L", remoteCandidateId: "R", currentRoundTripTime: 0.0012,
      availableOutgoingBitrate: 1_500_000, bytesSent: 1000 * scale, bytesReceived: 2000 * scale },
    { id: "L", type: "local-candidate", candidateType: "host", protocol: "udp", address: "127.0.0.1", port: 5000 },
    { id: "R", type: "remote-candidate", candidateType: "srflx", protocol: "udp", address: "10.0.0.1", port: 6000 },
    { id: "AI", type: "inbound-rtp", kind: "audio", bytesReceived: 500 * scale, packetsReceived: 10 * scale,
      packetsLost: 1, jitter: 0.004, audioLevel: 0.3, totalAudioEnergy: scale },
    { id: "VI", type: "inbound-rtp", kind: "video", bytesReceived: 900 * scale, packetsReceived: 20 * scale,
      packetsLost: 0, jitter: 0.01, framesDecoded: 30 * scale, framesPerSecond: 30, frameWidth: 640, frameHeight: 480,
      nackCount: 3, pliCount: 1 },
    { id: "VO", type: "outbound-rtp", kind: "video", bytesSent: 800 * scale, packetsSent: 19 * scale,
      framesEncoded: 30 * scale, framesPerSecond: 29, nackCount: 2, pliCount: 0, qualityLimitationReason: "bandwidth" },
  ];
  return new Map(list.map((s) => [s.id, s]));
}

test("the selected pair gives round-trip time, bytes and candidate types", () => {
  const s = summarizeReports(report(1), null, 1000);
  assert.equal(s.rtt_ms, 1.2);
  assert.equal(s.pair, "host ↔ srflx");
  assert.deepEqual(s.local_candidate, { type: "host", protocol: "udp", address: "127.0.0.1", port: 5000 });
  assert.equal(s.send_kbps, null); // no previous sample yet
  assert.equal(s.audio_out, null); // nothing sent of that kind
  assert.equal(s.video_in?.frames, 30);
  assert.equal(s.audio_in?.jitter_ms, 4);
});

test("bitrates are deltas over the time between two samples", () => {
  const first = summarizeReports(report(1), null, 1000);
  const second = summarizeReports(report(2), first, 2000);
  assert.equal(second.send_kbps, 8); // 1000 bytes in 1 s
  assert.equal(second.receive_kbps, 16);
  assert.equal(second.video_in?.kbps, 7.2);
  assert.equal(second.video_out?.kbps, 6.4);
});

test("a data-only call has a pair and no media", () => {
  const only = new Map([...report(1)].filter(([id]) => !["AI", "VI", "VO"].includes(id)));
  const s = summarizeReports(only, null, 0);
  assert.equal(s.bytes_sent, 1000);
  assert.deepEqual([s.audio_in, s.video_in, s.video_out], [null, null, null]);
});

test("video carries its NACK and PLI counts, the sender why it is limited, the pair the bandwidth estimate", () => {
  const s = summarizeReports(report(1), null, 1000);
  assert.equal(s.available_outgoing_kbps, 1500);
  assert.deepEqual([s.video_in?.nack_count, s.video_in?.pli_count], [3, 1]);
  assert.deepEqual([s.video_out?.nack_count, s.video_out?.pli_count], [2, 0]);
  assert.equal(s.video_out?.quality_limitation_reason, "bandwidth");
  assert.equal(s.video_in?.quality_limitation_reason, undefined); // a receiver has no encoder to limit
  assert.equal(s.audio_in?.nack_count, undefined);
});

test("an SFU subscriber link's report splits by member: each feed's data channel and its tracks by mid", () => {
  const byId = new Map(/** @type {[string, any][]} */ ([
    ["D1", { id: "D1", type: "data-channel", label: "11", bytesReceived: 5000, messagesReceived: 4 }],
    ["D2", { id: "D2", type: "data-channel", label: "12", bytesReceived: 70, messagesReceived: 2 }],
    ["D0", { id: "D0", type: "data-channel", label: "nbcall", bytesReceived: 0, messagesReceived: 0 }],
    ["V", { id: "V", type: "inbound-rtp", kind: "video", mid: "1", bytesReceived: 9000, packetsReceived: 12 }],
    ...report(1),
  ]));
  const feeds = { 11: "B", 12: "C" };
  const mids = new Map([["1", "B"]]);
  /** @param {any} s */
  const memberOf = (s) => (s.type === "data-channel" ? /** @type {any} */ (feeds)[s.label] : mids.get(s.mid));
  const got = summarizeFeeds(byId, memberOf, {}, 0);
  assert.deepEqual(Object.keys(got).sort(), ["B", "C"]); // our own channel and unnamed tracks belong to no member
  assert.deepEqual([got.B.bytes_received, got.B.messages_received, got.B.video_in?.bytes], [5000, 4, 9000]);
  assert.deepEqual([got.C.bytes_received, got.C.video_in, got.C.audio_in], [70, null, null]);
});
