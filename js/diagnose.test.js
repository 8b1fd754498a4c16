// The connectivity check's judgement and report, with the browser's parts faked.
import assert from "node:assert/strict";
import { test } from "node:test";
import { diagnose, judgeServer, reportRows, splitServers } from "./diagnose.js";

const turn = { urls: "turn:127.0.0.1:3478", username: "u", credential: "p" };

test("each URL of a server is checked on its own, with that server's credentials", () => {
  assert.deepEqual(splitServers([{ ...turn, urls: ["turn:a:1", "turn:a:2?transport=tcp"] }, { urls: "stun:s:1" }]), [
    { ...turn, urls: "turn:a:1" },
    { ...turn, urls: "turn:a:2?transport=tcp" },
    { urls: "stun:s:1" },
  ]);
});

test("a TURN server is fine when it gives a relay candidate, a STUN server when it gives srflx", () => {
  assert.equal(judgeServer("turn:x", { candidateTypes: ["host", "relay", "relay"], errors: [] }).ok, true);
  assert.deepEqual(judgeServer("turn:x", { candidateTypes: ["host", "relay"], errors: [] }).candidate_types, ["host", "relay"]);
  assert.equal(judgeServer("stun:x", { candidateTypes: ["host", "srflx"], errors: [] }).ok, true);
});

test("each failure has its advice: refused credentials, no answer, no srflx", () => {
  const refused = judgeServer("turn:x", {
    candidateTypes: ["host"], errors: [{ errorCode: 401, errorText: "Unauthorized", url: "turn:x" }],
  });
  assert.equal(refused.ok, false);
  assert.match(refused.advice, /refused the username and credential/);
  assert.match(judgeServer("turn:x", { candidateTypes: ["host"], errors: [] }).advice, /did not answer/);
  assert.match(judgeServer("stun:x", { candidateTypes: ["host"], errors: [] }).advice, /STUN server did not answer/);
});

test("the whole report: secure context, devices and servers, with the problems listed", async () => {
  const devices = {
    enumerateDevices: async () => /** @type {MediaDeviceInfo[]} */ ([{ kind: "audioinput" }, { kind: "audioinput" }]),
  };
  const gather = async () => ({ candidateTypes: ["host"], errors: [{ errorCode: 401, errorText: "Unauthorized", url: "turn:x" }] });
  const report = await diagnose([turn], { secure: false, devices, gather });
  assert.equal(report.ok, false);
  assert.equal(report.secure_context, false);
  assert.deepEqual(report.media.audio, { available: true, devices: 2, advice: "" });
  assert.match(report.media.video.advice, /no camera found/);
  assert.equal(report.problems.length, 2);
  assert.match(report.problems[0], /secure context: open the notebook over https/);
  const rows = reportRows(report);
  assert.deepEqual(rows[1].slice(0, 2), ["microphone", "2 found"]);
  assert.equal(rows[3][1], "host (errors: 401 Unauthorized)");
});

test("no servers and a secure page with devices: nothing to complain about", async () => {
  const devices = { enumerateDevices: async () => /** @type {MediaDeviceInfo[]} */ ([{ kind: "videoinput" }]) };
  const report = await diagnose([], { secure: true, devices });
  assert.equal(report.ok, true);
  assert.deepEqual(reportRows(report).at(-1), ["STUN/TURN servers", "none configured", "host candidates only"]);
});

test("without mediaDevices (an insecure page) the devices are reported missing, with why", async () => {
  const report = await diagnose([], { secure: false, devices: undefined });
  assert.match(report.media.video.advice, /not a secure context/);
});
