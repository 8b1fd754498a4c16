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
 * @param {string} tag
 * @param {Record<string, any>} props
 * @param {(Node | string)[]} children
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
    h("div", { class: "nbcall-controls" }, [peerSelect, callBtn, answerBtn, declineBtn, hangupBtn]),
    status,
    error,
    h("div", { class: "nbcall-section-title", textContent: "Data channel" }),
    chat,
    h("form", { class: "nbcall-compose" }, [input, sendBtn]),
    h("details", { class: "nbcall-log-details" }, [h("summary", {}, ["Signaling log ", logCount]), logList]),
    h("details", { class: "nbcall-rtc-details" }, [h("summary", {}, ["Connection and statistics"]), rtcTable]),
  ]);
  el.append(root);

  callBtn.addEventListener("click", () => peerSelect.value && ui("call", { peer: peerSelect.value }), on);
  answerBtn.addEventListener("click", () => ui("answer"), on);
  declineBtn.addEventListener("click", () => ui("decline"), on);
  hangupBtn.addEventListener("click", () => ui("hangup"), on);
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
    server.textContent = online ? `online at ${model.get("server_url")}` : "offline";
    status.textContent = (STATE_TEXT[/** @type {keyof STATE_TEXT} */ (state)] ?? state).replace("{peer}", peer);
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
  }

  function renderChat() {
    chat.replaceChildren(
      ...phone.chat.map((m) =>
        h("div", { class: `nbcall-msg nbcall-${m.dir}`, dataset: { kind: m.kind } }, [
          h("span", { class: "nbcall-msg-who", textContent: m.dir === "in" ? "←" : "→" }),
          h("span", { class: "nbcall-msg-kind", textContent: m.kind }),
          h("span", { class: "nbcall-msg-text", textContent: m.text }),
        ]),
      ),
    );
    chat.scrollTop = chat.scrollHeight;
  }

  function renderLog() {
    logCount.textContent = `(${phone.log.length})`;
    logList.replaceChildren(...phone.log.map(logRow));
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
    ];
    rtcTable.replaceChildren(
      ...rows.map(([k, v]) => h("tr", {}, [h("th", { textContent: k ?? "" }), h("td", { textContent: v ?? "—" })])),
    );
  }

  const events = [
    ["log", renderLog],
    ["chat", renderChat],
    ["rtc", renderRtc],
    ["stats", renderRtc],
  ];
  for (const [name, fn] of events) phone.addEventListener(/** @type {string} */ (name), /** @type {any} */ (fn), on);
  const traits = "change:state change:peer change:peers change:error change:online change:server_url change:user_id";
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
