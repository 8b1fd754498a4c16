// One view of a phone: DOM only. Every view of the same model shares the model's BrowserPhone; the text it
// shows comes from format.js.

import { candidateText, describe, logSize, logTime, rtpRows, sparkPoints, statusText } from "./format.js";
import { h } from "./dom.js";
import { onChanges } from "./model.js";
import { renderSteps } from "./steps.js";
import { mountDiagnosis } from "./diagnose.js";
import { mountSdpPanel } from "./sdp-panel.js";
import { mountSequence } from "./sequence.js";

/**
 * @typedef {import("./model.js").Model} Model
 * @typedef {import("./phone.js").BrowserPhone} BrowserPhone
 * @typedef {import("./phone.js").ChatEntry} ChatEntry
 * @typedef {import("./protocol.js").LogEntry} LogEntry
 */

/** The traits a view shows. @type {(keyof import("./model.js").Traits)[]} */
const SHOWN_TRAITS = [
  "state", "peer", "peers", "error", "online", "server_url", "user_id", "mic_on", "camera_on", "local_media",
];

/**
 * Build the phone's DOM in `el`; returns the cleanup.
 * @param {Model} model
 * @param {HTMLElement} el
 * @param {BrowserPhone} phone
 */
export function renderPhone(model, el, phone) {
  const abort = new AbortController();
  const on = { signal: abort.signal };
  /**
   * A button pressed: Python acts on it (through the same path as its API).
   * @param {string} action @param {string} [peer]
   */
  const ui = (action, peer) => phone.link.tell("ui", peer === undefined ? { action } : { action, peer });

  const title = h("span", { class: "nbcall-title" });
  const server = h("span", { class: "nbcall-server" });
  const badge = h("span", { class: "nbcall-badge" });
  const peerSelect = h("select", { class: "nbcall-peer-select", title: "Who to call" });
  const callBtn = h("button", { class: "nbcall-call", textContent: "Call" });
  const answerBtn = h("button", { class: "nbcall-answer", textContent: "Answer" });
  const declineBtn = h("button", { class: "nbcall-decline", textContent: "Decline" });
  const hangupBtn = h("button", { class: "nbcall-hangup", textContent: "Hang up" });
  const micBtn = h("button", { class: "nbcall-mic", title: "Microphone" });
  const cameraBtn = h("button", { class: "nbcall-camera", title: "Camera" });
  // Remote video large; our preview small and mirrored, as people expect to see themselves. The remote <video>
  // stays muted (sound plays through <audio>), so that autoplay policies never block the picture.
  const remoteVideo = h("video", { class: "nbcall-remote-video", autoplay: true, playsInline: true, muted: true });
  const localVideo = h("video", { class: "nbcall-local-video", autoplay: true, playsInline: true, muted: true });
  const remoteAudio = h("audio", { class: "nbcall-remote-audio", autoplay: true });
  const mediaNote = h("div", { class: "nbcall-media-note" });
  const media = h("div", { class: "nbcall-media" }, [remoteVideo, mediaNote, localVideo, remoteAudio]);
  const sparks = h("div", { class: "nbcall-sparks" });
  const status = h("div", { class: "nbcall-status" });
  const error = h("div", { class: "nbcall-error" });
  const chat = h("div", { class: "nbcall-chat" });
  const input = h("input", { class: "nbcall-input", type: "text", placeholder: "Message to send on the data channel" });
  const sendBtn = h("button", { class: "nbcall-send", textContent: "Send" });
  const logCount = h("span");
  const logList = h("div", { class: "nbcall-log" });
  const rtcTable = h("table", { class: "nbcall-rtc" });

  const root = h("div", { class: "nbcall-phone" }, [
    h("div", { class: "nbcall-header" }, [title, badge, server]),
    h("div", { class: "nbcall-controls" }, [peerSelect, callBtn, answerBtn, declineBtn, hangupBtn, micBtn, cameraBtn]),
    status,
    error,
    media,
    h("div", { class: "nbcall-section-title", textContent: "Data channel" }),
    chat,
    h("form", { class: "nbcall-compose" }, [input, sendBtn]),
    h("details", { class: "nbcall-log-details" }, [h("summary", {}, ["Signaling log ", logCount]), logList]),
    h("details", { class: "nbcall-rtc-details" }, [h("summary", {}, ["Connection and statistics"]), sparks, rtcTable]),
  ]);
  const steps = renderSteps(model, ui);
  root.querySelector(".nbcall-log-details")?.before(steps.element);
  el.append(root);
  const unmountSdp = mountSdpPanel(root, phone);
  const unmountDiagnosis = mountDiagnosis(root, phone);
  const unmountSequence = mountSequence(root, phone, () => ({ user: model.get("user_id"), peer: model.get("peer") }));

  callBtn.addEventListener("click", () => peerSelect.value && ui("call", peerSelect.value), on);
  answerBtn.addEventListener("click", () => ui("answer"), on);
  declineBtn.addEventListener("click", () => ui("decline"), on);
  hangupBtn.addEventListener("click", () => ui("hangup"), on);
  micBtn.addEventListener("click", () => ui(model.get("mic_on") ? "mute" : "unmute"), on);
  cameraBtn.addEventListener("click", () => ui(model.get("camera_on") ? "camera_off" : "camera_on"), on);
  root.querySelector("form")?.addEventListener(
    "submit",
    (e) => {
      e.preventDefault();
      if (!input.value) return;
      phone.sendText(input.value);
      input.value = "";
    },
    on,
  );

  function renderState() {
    const state = model.get("state");
    const peer = model.get("peer");
    const peers = model.get("peers");
    const online = model.get("online");
    root.dataset.state = state;
    root.dataset.user = model.get("user_id");
    title.textContent = model.get("user_id");
    root.classList.toggle("nbcall-online", Boolean(online));
    badge.textContent = state;
    badge.className = `nbcall-badge nbcall-${state}`;
    // The URL's query may hold the server's token: show where, not the credential.
    const where = model.get("server_url").split("?")[0];
    server.textContent = !where ? "no signaling server: connect by copying text" : online ? `online at ${where}` : `offline (${where})`;
    status.textContent = statusText(state, peer);
    error.textContent = model.get("error");
    const previous = peerSelect.value;
    peerSelect.replaceChildren(
      h("option", { value: "", textContent: peers.length ? "Choose a peer" : "No one else is online" }),
      ...peers.map((p) => h("option", { value: p, textContent: p })),
    );
    peerSelect.value = peers.includes(previous) ? previous : peers.length === 1 ? peers[0] : "";
    const inCall = ["calling", "connecting", "connected"].includes(state);
    callBtn.hidden = inCall || state === "ringing";
    peerSelect.hidden = callBtn.hidden;
    answerBtn.hidden = declineBtn.hidden = state !== "ringing";
    hangupBtn.hidden = !inCall;
    input.disabled = sendBtn.disabled = state !== "connected";
    renderMedia();
  }

  function renderMedia() {
    const wantsAudio = Boolean(model.get("audio"));
    const wantsVideo = Boolean(model.get("video"));
    const micOn = model.get("mic_on");
    const cameraOn = model.get("camera_on");
    micBtn.hidden = !wantsAudio;
    cameraBtn.hidden = !wantsVideo;
    micBtn.textContent = micOn ? "Mute" : "Unmute";
    cameraBtn.textContent = cameraOn ? "Camera off" : "Camera on";
    micBtn.classList.toggle("nbcall-off", !micOn);
    // In a call without that device (refused, missing), the button would change nothing: say so.
    const sending = model.get("local_media") ?? {};
    const inCall = ["calling", "connecting", "connected"].includes(model.get("state"));
    micBtn.disabled = inCall && !sending.audio;
    cameraBtn.disabled = inCall && !sending.video;
    cameraBtn.classList.toggle("nbcall-off", !cameraOn);
    const remote = phone.remoteStream;
    const remoteHasVideo = Boolean(remote?.getVideoTracks().length);
    // A data-only phone keeps its compact look until someone sends it media.
    media.hidden = !wantsAudio && !wantsVideo && !remote;
    setSource(remoteVideo, remoteHasVideo ? remote : null);
    setSource(remoteAudio, remote?.getAudioTracks().length ? remote : null);
    const local = phone.localStream;
    setSource(localVideo, local?.getVideoTracks().length ? local : null);
    localVideo.hidden = !local?.getVideoTracks().length;
    localVideo.classList.toggle("nbcall-off", !cameraOn);
    const state = model.get("state");
    mediaNote.textContent = remoteHasVideo
      ? ""
      : remote
        ? `${model.get("peer")} sends sound only`
        : ["calling", "connecting", "connected"].includes(state)
          ? "No video from the peer (yet)"
          : "Video appears here during a call";
    media.classList.toggle("nbcall-has-remote-video", remoteHasVideo);
  }

  /** @param {ChatEntry} m */
  function chatRow(m) {
    return h("div", { class: `nbcall-msg nbcall-${m.dir}`, dataset: { kind: m.kind } }, [
      h("span", { class: "nbcall-msg-who", textContent: m.dir === "in" ? "←" : "→" }),
      h("span", { class: "nbcall-msg-kind", textContent: m.kind }),
      h("span", { class: "nbcall-msg-text", textContent: m.text }),
    ]);
  }

  // Lists grow by appending a row: redrawing hundreds of rows per message would hold up the page's
  // main thread, where the WebRTC callbacks run too.
  /** @param {HTMLElement} list @param {Node} row @param {number} keep */
  function append(list, row, keep) {
    list.append(row);
    while (list.childElementCount > keep) list.firstElementChild?.remove();
  }

  function renderChat() {
    chat.replaceChildren(...phone.chat.map(chatRow));
    chat.scrollTop = chat.scrollHeight;
  }

  function renderLog() {
    logCount.textContent = `(${phone.log.length})`;
    logList.replaceChildren(...phone.log.map(logRow));
    newLog = [];
  }

  /** Rows that arrived since the last frame. @type {ChatEntry[]} */
  let newChat = [];
  /** @type {LogEntry[]} */
  let newLog = [];

  function appendChat() {
    for (const entry of newChat) append(chat, chatRow(entry), phone.chat.length);
    newChat = [];
    chat.scrollTop = chat.scrollHeight; // reads layout: once per frame, not once per message
  }

  function appendLog() {
    logCount.textContent = `(${phone.log.length})`;
    for (const entry of newLog) append(logList, logRow(entry), phone.log.length);
    newLog = [];
  }

  function renderRtc() {
    const shown = phone.shown;
    const s = shown?.stats;
    const rtc = shown?.rtc ?? {};
    const channel = shown?.channel;
    /** @type {[string, string | undefined][]} */
    const rows = [
      ["connection", rtc.connectionState],
      ["ICE connection", rtc.iceConnectionState],
      ["ICE gathering", rtc.iceGatheringState],
      ["signaling", rtc.signalingState],
      ["data channel", channel ? `${channel.label} (${channel.readyState})` : undefined],
      ["round-trip time", s?.rtt_ms != null ? `${s.rtt_ms} ms` : undefined],
      ["sent / received", s ? `${s.bytes_sent} / ${s.bytes_received} bytes` : undefined],
      ["bitrate out / in", s?.send_kbps != null ? `${s.send_kbps} / ${s.receive_kbps} kbit/s` : undefined],
      ["local candidate", candidateText(s?.local_candidate)],
      ["remote candidate", candidateText(s?.remote_candidate)],
      ...rtpRows("audio in", s?.audio_in),
      ...rtpRows("audio out", s?.audio_out),
      ...rtpRows("video in", s?.video_in),
      ...rtpRows("video out", s?.video_out),
    ];
    const history = shown?.statsHistory ?? [];
    sparks.replaceChildren(
      sparkline("bitrate out / in, kbit/s", [history.map((x) => x.send_kbps), history.map((x) => x.receive_kbps)]),
      sparkline("round-trip time, ms", [history.map((x) => x.rtt_ms)]),
    );
    rtcTable.replaceChildren(
      ...rows.map(([k, v]) => h("tr", {}, [h("th", { textContent: k }), h("td", { textContent: v ?? "—" })])),
    );
  }

  // The view follows events at most once per frame: a call's setup brings bursts of them, and redrawing for
  // each would keep the page's main thread, which runs WebRTC's callbacks too, from the next signaling step.
  const soon = frameScheduler(abort.signal);
  /** @type {[import("./phone.js").PhoneEvent, (e: Event) => void][]} */
  const events = [
    ["log", () => soon(renderLog)],
    ["log-entry", (e) => (newLog.push(/** @type {CustomEvent<LogEntry>} */ (e).detail), soon(appendLog))],
    ["chat-entry", (e) => (newChat.push(/** @type {CustomEvent<ChatEntry>} */ (e).detail), soon(appendChat))],
    ["rtc", () => soon(renderRtc)],
    ["stats", () => soon(renderRtc)],
    ["media", () => soon(renderMedia)],
  ];
  for (const [name, fn] of events) phone.addEventListener(name, fn, on);
  const unfollow = onChanges(model, SHOWN_TRAITS, () => soon(renderState));
  renderState();
  renderChat();
  renderLog();
  renderRtc();
  return () => {
    abort.abort();
    unfollow();
    steps.cleanup();
    unmountSdp();
    unmountSequence();
    unmountDiagnosis();
  };
}

/**
 * `soon(fn)` runs `fn` at the next animation frame, once however often it was asked for meanwhile; a timer
 * stands in where frames do not come (a hidden tab). Nothing runs after `signal` aborts.
 * @param {AbortSignal} signal
 */
function frameScheduler(signal) {
  /** @type {Set<() => void>} */
  const due = new Set();
  let frame = 0;
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  let timer;
  const run = () => {
    cancelAnimationFrame(frame);
    clearTimeout(timer);
    frame = 0;
    const fns = [...due];
    due.clear();
    for (const fn of fns) fn();
  };
  signal.addEventListener("abort", () => {
    cancelAnimationFrame(frame);
    clearTimeout(timer);
    due.clear();
  });
  return (/** @type {() => void} */ fn) => {
    if (signal.aborted) return;
    due.add(fn);
    if (!frame) {
      frame = requestAnimationFrame(run);
      timer = setTimeout(run, 200);
    }
  };
}

/** @param {HTMLMediaElement} el @param {MediaStream | null | undefined} stream */
function setSource(el, stream) {
  if (el.srcObject === (stream ?? null)) return;
  el.srcObject = stream ?? null;
  // Autoplay may be refused (sound without a user gesture): the picture still plays, muted.
  if (stream) el.play().catch(() => {});
}

const SPARK_W = 120;
const SPARK_H = 28;
const SPARK_COLORS = ["#2f9e44", "#1971c2"];

/**
 * A small SVG chart of one or two series (null points skipped), scaled to the largest value shown.
 * @param {string} label @param {(number | null | undefined)[][]} series
 */
function sparkline(label, series) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("width", String(SPARK_W));
  svg.setAttribute("height", String(SPARK_H));
  svg.setAttribute("class", "nbcall-spark");
  const values = series.flat().filter((v) => v != null);
  const max = Math.max(1, ...values);
  series.forEach((points, i) => {
    const line = document.createElementNS(ns, "polyline");
    line.setAttribute("points", sparkPoints(points, max, SPARK_W, SPARK_H));
    line.setAttribute("fill", "none");
    line.setAttribute("stroke", SPARK_COLORS[i]);
    svg.append(line);
  });
  const last = series.map((p) => p.at(-1) ?? "—").join(" / ");
  return h("div", { class: "nbcall-spark-box" }, [svg, h("div", {}, [`${label}: ${last} (max ${max})`])]);
}

/** @param {LogEntry} entry */
function logRow(entry) {
  const arrow = { in: "⬇ in", out: "⬆ out", event: "• rtc" }[entry.dir];
  const time = logTime(entry.t);
  const size = logSize(entry);
  const pre = h("pre", {});
  const row = h("details", { class: `nbcall-log-entry nbcall-${entry.dir}`, dataset: { type: entry.type } }, [
    h("summary", {}, [
      h("span", { class: "nbcall-log-time", textContent: time }),
      h("span", { class: "nbcall-log-dir", textContent: arrow }),
      h("span", { class: "nbcall-log-type", textContent: entry.type }),
      h("span", { class: "nbcall-log-size", textContent: size }),
    ]),
    pre,
  ]);
  // The message itself (an SDP can be kilobytes) is laid out when the row is opened: rows arrive while a call
  // is being set up, on the page's main thread, which WebRTC's callbacks share.
  row.addEventListener("toggle", () => {
    if (row.open && !pre.textContent) pre.textContent = describe(entry.detail);
  });
  return row;
}
