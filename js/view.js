// One view of a phone: DOM only. Every view of the same model shares the model's BrowserPhone.

const STATE_TEXT = {
  idle: "Ready",
  calling: "Calling {peer}…",
  ringing: "{peer} is calling you",
  connecting: "Connecting to {peer}…",
  connected: "In a call with {peer}",
  ended: "Call ended",
  failed: "Call failed",
};

/**
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {Record<string, any>} props
 * @param {(Node | string)[]} children
 * @returns {HTMLElementTagNameMap[K]}
 */
function h(tag, props = {}, children = []) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k in el) /** @type {any} */ (el)[k] = v;
    else el.setAttribute(k, v);
  }
  el.append(...children);
  return el;
}

/**
 * Build the phone's DOM in `el`; returns the cleanup.
 * @param {any} model
 * @param {HTMLElement} el
 * @param {import("./phone.js").BrowserPhone} phone
 */
export function renderPhone(model, el, phone) {
  const abort = new AbortController();
  const on = { signal: abort.signal };
  const ui = (/** @type {string} */ action, extra = {}) => model.send({ type: "ui", action, ...extra });

  const title = h("span", { class: "nbcall-title" });
  const server = h("span", { class: "nbcall-server" });
  const badge = h("span", { class: "nbcall-badge" });
  const peerSelect = /** @type {HTMLSelectElement} */ (h("select", { class: "nbcall-peer-select", title: "Who to call" }));
  const callBtn = h("button", { class: "nbcall-call", textContent: "Call" });
  const answerBtn = h("button", { class: "nbcall-answer", textContent: "Answer" });
  const declineBtn = h("button", { class: "nbcall-decline", textContent: "Decline" });
  const hangupBtn = h("button", { class: "nbcall-hangup", textContent: "Hang up" });
  const micBtn = h("button", { class: "nbcall-mic", title: "Microphone" });
  const cameraBtn = h("button", { class: "nbcall-camera", title: "Camera" });
  // Remote video large; our preview small and mirrored, as people expect to see themselves. The remote <video>
  // stays muted (sound plays through <audio>), so that autoplay policies never block the picture.
  const remoteVideo = /** @type {HTMLVideoElement} */ (
    h("video", { class: "nbcall-remote-video", autoplay: true, playsInline: true, muted: true })
  );
  const localVideo = /** @type {HTMLVideoElement} */ (
    h("video", { class: "nbcall-local-video", autoplay: true, playsInline: true, muted: true })
  );
  const remoteAudio = /** @type {HTMLAudioElement} */ (h("audio", { class: "nbcall-remote-audio", autoplay: true }));
  const mediaNote = h("div", { class: "nbcall-media-note" });
  const media = h("div", { class: "nbcall-media" }, [remoteVideo, mediaNote, localVideo, remoteAudio]);
  const sparks = h("div", { class: "nbcall-sparks" });
  const status = h("div", { class: "nbcall-status" });
  const error = h("div", { class: "nbcall-error" });
  const chat = h("div", { class: "nbcall-chat" });
  const input = /** @type {HTMLInputElement} */ (
    h("input", { class: "nbcall-input", type: "text", placeholder: "Message to send on the data channel" })
  );
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
  el.append(root);

  callBtn.addEventListener("click", () => peerSelect.value && ui("call", { peer: peerSelect.value }), on);
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
    const peers = /** @type {string[]} */ (model.get("peers"));
    const online = model.get("online");
    root.dataset.state = state;
    root.dataset.user = model.get("user_id");
    title.textContent = model.get("user_id");
    root.classList.toggle("nbcall-online", Boolean(online));
    badge.textContent = state;
    badge.className = `nbcall-badge nbcall-${state}`;
    // The URL's query may hold the server's token: show where, not the credential.
    const where = model.get("server_url").split("?")[0];
    server.textContent = online ? `online at ${where}` : `offline (${where})`;
    status.textContent = (STATE_TEXT[/** @type {keyof typeof STATE_TEXT} */ (state)] ?? state).replace("{peer}", peer);
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

  /** @param {import("./phone.js").ChatEntry} m */
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
  }

  /** @param {Event} e */
  function appendChat(e) {
    append(chat, chatRow(/** @type {CustomEvent} */ (e).detail), phone.chat.length);
    chat.scrollTop = chat.scrollHeight;
  }

  /** @param {Event} e */
  function appendLog(e) {
    logCount.textContent = `(${phone.log.length})`;
    append(logList, logRow(/** @type {CustomEvent} */ (e).detail), phone.log.length);
  }

  function renderRtc() {
    const s = phone.stats;
    const rows = [
      ["connection", phone.rtc.connectionState],
      ["ICE connection", phone.rtc.iceConnectionState],
      ["ICE gathering", phone.rtc.iceGatheringState],
      ["signaling", phone.rtc.signalingState],
      ["data channel", phone.channel ? `${phone.channel.label} (${phone.channel.readyState})` : undefined],
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
    const history = phone.statsHistory;
    sparks.replaceChildren(
      sparkline("bitrate out / in, kbit/s", [history.map((x) => x.send_kbps), history.map((x) => x.receive_kbps)]),
      sparkline("round-trip time, ms", [history.map((x) => x.rtt_ms)]),
    );
    rtcTable.replaceChildren(
      ...rows.map(([k, v]) => h("tr", {}, [h("th", { textContent: k ?? "" }), h("td", { textContent: v ?? "—" })])),
    );
  }

  const events = [
    ["log", renderLog],
    ["log-entry", appendLog],
    ["chat-entry", appendChat],
    ["rtc", renderRtc],
    ["stats", renderRtc],
    ["media", renderMedia],
  ];
  for (const [name, fn] of events) phone.addEventListener(/** @type {string} */ (name), /** @type {any} */ (fn), on);
  const traits =
    "change:state change:peer change:peers change:error change:online change:server_url change:user_id " +
    "change:mic_on change:camera_on change:local_media";
  model.on(traits, renderState);
  renderState();
  renderChat();
  renderLog();
  renderRtc();
  return () => {
    abort.abort();
    model.off(traits, renderState);
  };
}

/** @param {HTMLMediaElement} el @param {MediaStream | null | undefined} stream */
function setSource(el, stream) {
  if (el.srcObject === (stream ?? null)) return;
  el.srcObject = stream ?? null;
  // Autoplay may be refused (sound without a user gesture): the picture still plays, muted.
  if (stream) el.play().catch(() => {});
}

/**
 * Rows of the statistics table for one inbound-rtp or outbound-rtp summary.
 * @param {string} label @param {import("./stats.js").RtpSummary | null | undefined} r
 * @returns {[string, string | undefined][]}
 */
function rtpRows(label, r) {
  if (!r) return [];
  const parts = [`${r.kbps ?? "…"} kbit/s`, `${r.packets} packets`];
  if (r.packets_lost != null) parts.push(`${r.packets_lost} lost`);
  if (r.jitter_ms != null) parts.push(`jitter ${r.jitter_ms} ms`);
  if (r.frames != null) parts.push(`${r.frames} frames`, `${r.fps ?? 0} fps`);
  if (r.width) parts.push(`${r.width}×${r.height}`);
  if (r.audio_level != null) parts.push(`level ${r.audio_level.toFixed(2)}`);
  return [[label, parts.join(", ")]];
}

const SPARK_W = 120;
const SPARK_H = 28;
const SPARK_COLORS = ["#2f9e44", "#1971c2"];

/**
 * A small SVG chart of one or two series (null points skipped), scaled to the largest value shown.
 * @param {string} label @param {(number | null)[][]} series
 */
function sparkline(label, series) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("width", String(SPARK_W));
  svg.setAttribute("height", String(SPARK_H));
  svg.setAttribute("class", "nbcall-spark");
  const values = series.flat().filter((v) => v != null);
  const max = Math.max(1, .../** @type {number[]} */ (values));
  series.forEach((points, i) => {
    // The newest sample at the right edge; the line fills the width as samples come in.
    const step = SPARK_W / Math.max(1, points.length - 1);
    const xy = points
      .map((v, j) => (v == null ? null : `${j * step},${SPARK_H - 1 - (v / max) * (SPARK_H - 2)}`))
      .filter(Boolean);
    const line = document.createElementNS(ns, "polyline");
    line.setAttribute("points", xy.join(" "));
    line.setAttribute("fill", "none");
    line.setAttribute("stroke", SPARK_COLORS[i]);
    svg.append(line);
  });
  const last = series.map((p) => p.at(-1) ?? "—").join(" / ");
  return h("div", { class: "nbcall-spark-box" }, [svg, h("div", {}, [`${label}: ${last} (max ${max})`])]);
}

/** @param {import("./stats.js").CandidateSummary | null | undefined} c */
function candidateText(c) {
  return c ? `${c.type} ${c.protocol} ${c.address}:${c.port}` : undefined;
}

/** @param {import("./phone.js").LogEntry} entry */
function logRow(entry) {
  const arrow = { in: "⬇ in", out: "⬆ out", event: "• rtc" }[entry.dir];
  const time = new Date(entry.t * 1000).toISOString().slice(11, 23);
  // Events show their value in the row; messages show their size on the wire.
  const size = entry.dir === "event" ? eventValue(entry.detail) : entry.size ? `${entry.size} B` : "";
  return h("details", { class: `nbcall-log-entry nbcall-${entry.dir}`, dataset: { type: entry.type } }, [
    h("summary", {}, [
      h("span", { class: "nbcall-log-time", textContent: time }),
      h("span", { class: "nbcall-log-dir", textContent: arrow }),
      h("span", { class: "nbcall-log-type", textContent: entry.type }),
      h("span", { class: "nbcall-log-size", textContent: size }),
    ]),
    h("pre", { textContent: describe(entry.detail) }),
  ]);
}

/** @param {any} detail */
function eventValue(detail) {
  if (Array.isArray(detail)) return detail.length ? detail.join(", ") : "none"; // e.g. the ICE servers
  return typeof detail === "string" ? detail : detail?.label ?? "";
}

/** Show signaling messages the way a learner wants them: the SDP and candidate unwrapped from their JSON strings. */
function describe(/** @type {any} */ detail) {
  if (detail == null || typeof detail !== "object") return String(detail ?? "");
  const shown = { ...detail };
  for (const key of ["sdp", "candidate"]) {
    if (typeof shown[key] !== "string") continue;
    try {
      shown[key] = JSON.parse(shown[key]);
    } catch {
      // not JSON: show the string as it is
    }
  }
  const sdp = shown.sdp?.sdp;
  if (typeof sdp === "string") {
    const text = JSON.stringify({ ...shown, sdp: { type: shown.sdp.type, sdp: "(below)" } }, null, 2);
    return `${text}\n\n${sdp.trim()}`;
  }
  return JSON.stringify(shown, null, 2);
}
