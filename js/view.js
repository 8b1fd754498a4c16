// One view of a phone: DOM only. Every view of the same model shares the model's BrowserPhone; the text it
// shows comes from format.js. In a room (the `room` trait set) it adds the members strip, Invite and Leave,
// a grid with one labelled tile per member in place of the single remote video, the sender on chat rows and
// a member selector for the statistics.

import { h } from "./dom.js";
import { hiddenText } from "./grid.js";
import {
  candidateText, closedText, describe, feedRows, logSize, logTime, progressText, roomStatusText, rtpRows, sparkPoints,
  statusText,
} from "./format.js";
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
  "state", "peer", "peers", "error", "online", "server_address", "user_id", "mic_on", "camera_on", "local_media",
  "room", "members", "connections", "invitation", "closed", "_engine_page",
];
const IN_CALL = ["calling", "connecting", "connected"];
// A transfer reports progress with every message it moves. Redrawn each frame, the bar and its label cost
// the page (style, layout, paint, compositing) up to as much CPU per MiB as the data channel's own work
// (bench/bounds.py): it is redrawn a few times a second, as file-transfer tools do.
const PROGRESS_MS = 250;
/** The statistics panel's choices in an SFU room: our two links, both to the SFU. @type {[string, string][]} */
const SFU_CHOICES = [
  ["publisher", "publisher link to the SFU (what this phone sends)"],
  ["subscriber", "subscriber link to the SFU (every member's feed)"],
];
const SFU_LINKS = {
  publisher: "publisher, to the SFU (Janus): this phone's data and media, sent once for every member",
  subscriber: "subscriber, from the SFU (Janus): every other member's feed on one connection",
};

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
  // Rooms: who to invite (peers not in the room, or not the peer of a 1:1 call), Invite, and Leave.
  const inviteSelect = h("select", { class: "nbcall-invite-select", title: "Who to invite into the room" });
  const inviteBtn = h("button", { class: "nbcall-invite", textContent: "Invite", title: "Invite into a room" });
  const leaveBtn = h("button", { class: "nbcall-leave", textContent: "Leave" });
  const members = h("div", { class: "nbcall-members" });
  const grid = h("div", { class: "nbcall-grid" });
  const gridNote = h("div", { class: "nbcall-grid-note" });
  const statsPeer = h("select", { class: "nbcall-stats-peer", title: "Whose connection to show" });
  const micBtn = h("button", { class: "nbcall-mic", title: "Microphone" });
  const cameraBtn = h("button", { class: "nbcall-camera", title: "Camera" });
  // Remote video large; our preview small and mirrored, as people expect to see themselves. The remote <video>
  // stays muted (sound plays through <audio>), so that autoplay policies never block the picture.
  const remoteVideo = h("video", { class: "nbcall-remote-video", autoplay: true, playsInline: true, muted: true });
  const localVideo = h("video", { class: "nbcall-local-video", autoplay: true, playsInline: true, muted: true });
  const remoteAudio = h("audio", { class: "nbcall-remote-audio", autoplay: true });
  const mediaNote = h("div", { class: "nbcall-media-note" });
  const media = h("div", { class: "nbcall-media" }, [remoteVideo, mediaNote, localVideo, remoteAudio, grid]);
  const sparks = h("div", { class: "nbcall-sparks" });
  const status = h("div", { class: "nbcall-status" });
  const error = h("div", { class: "nbcall-error" });
  const viewerNote = h("div", {
    class: "nbcall-viewer-note",
    textContent: "This phone's calls run in another browser tab: this tab only shows its state.",
  });
  const chat = h("div", { class: "nbcall-chat" });
  // The large message or file on its way: what, how much, how fast, how long still.
  const progressBar = h("progress", { class: "nbcall-progress-bar", max: "1" });
  const progressLabel = h("span", { class: "nbcall-progress-text" });
  const progress = h("div", { class: "nbcall-progress", hidden: true }, [progressBar, progressLabel]);
  const input = h("input", { class: "nbcall-input", type: "text", placeholder: "Message to send on the data channel" });
  const sendBtn = h("button", { class: "nbcall-send", textContent: "Send" });
  const logCount = h("span");
  const logList = h("div", { class: "nbcall-log" });
  const rtcTable = h("table", { class: "nbcall-rtc" });
  const rtcDetails = h("details", { class: "nbcall-rtc-details" }, [
    h("summary", {}, ["Connection and statistics"]), statsPeer, sparks, rtcTable,
  ]);

  const root = h("div", { class: "nbcall-phone" }, [
    h("div", { class: "nbcall-header" }, [title, badge, server]),
    h("div", { class: "nbcall-controls" }, [
      peerSelect, callBtn, inviteSelect, inviteBtn, answerBtn, declineBtn, hangupBtn, leaveBtn, micBtn, cameraBtn,
    ]),
    status,
    viewerNote,
    members,
    error,
    media,
    h("div", { class: "nbcall-section-title", textContent: "Data channel" }),
    chat,
    progress,
    h("form", { class: "nbcall-compose" }, [input, sendBtn]),
    h("details", { class: "nbcall-log-details" }, [h("summary", {}, ["Signaling log ", logCount]), logList]),
    rtcDetails,
  ]);
  const steps = renderSteps(model, ui);
  root.querySelector(".nbcall-log-details")?.before(steps.element);
  el.append(root);
  const unmountSdp = mountSdpPanel(root, phone, () => ui("explain"));
  const unmountDiagnosis = mountDiagnosis(root, phone);
  const unmountSequence = mountSequence(root, phone, () => ({ user: model.get("user_id"), peer: model.get("peer") }));

  callBtn.addEventListener("click", () => peerSelect.value && ui("call", peerSelect.value), on);
  answerBtn.addEventListener("click", () => ui("answer"), on);
  declineBtn.addEventListener("click", () => ui("decline"), on);
  hangupBtn.addEventListener("click", () => ui("hangup"), on);
  // Idle, Invite starts a room with the peer chosen to call; in a call or a room, with the one chosen to invite.
  inviteBtn.addEventListener("click", () => {
    const peer = inviteSelect.hidden ? peerSelect.value : inviteSelect.value;
    if (peer) ui("invite", peer);
  }, on);
  leaveBtn.addEventListener("click", () => ui("leave"), on);
  statsPeer.addEventListener("change", () => renderRtc(), on);
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
    const user = model.get("user_id");
    const room = model.get("room") ?? "";
    const invitation = model.get("invitation") ?? {};
    const inRoom = Boolean(room);
    root.dataset.state = state;
    root.dataset.user = user;
    root.dataset.room = room;
    root.classList.toggle("nbcall-in-room", inRoom);
    title.textContent = model.get("user_id");
    root.classList.toggle("nbcall-online", Boolean(online));
    // A phone replaced by a new one (the cell ran again) stays on screen, closed, saying so.
    const closed = Boolean(model.get("closed"));
    root.toggleAttribute("data-closed", closed);
    // Another tab runs the calls: this one has no connection, video or chat of its own to show.
    root.toggleAttribute("data-viewer", !phone.engine);
    badge.textContent = closed ? "closed" : state;
    badge.className = `nbcall-badge nbcall-${closed ? "closed" : state}`;
    // Python sends the server's address without its query, which holds the token.
    const where = model.get("server_address");
    server.textContent = !where
      ? "no signaling server: connect by copying text"
      : online
        ? `online at ${where}`
        : `offline (${where})`;
    const roomMembers = model.get("members") ?? [];
    status.textContent = closed
      ? closedText(user, model.get("error"))
      : roomStatusText({ state, user, peer, room, members: roomMembers, invitation }) ?? statusText(state, peer);
    error.textContent = model.get("error");
    const previous = peerSelect.value;
    peerSelect.replaceChildren(
      h("option", { value: "", textContent: peers.length ? "Choose a peer" : "No one else is online" }),
      ...peers.map((p) => h("option", { value: p, textContent: p })),
    );
    peerSelect.value = peers.includes(previous) ? previous : peers.length === 1 ? peers[0] : "";
    const inCall = IN_CALL.includes(state);
    callBtn.hidden = inCall || state === "ringing" || inRoom;
    peerSelect.hidden = callBtn.hidden;
    answerBtn.hidden = declineBtn.hidden = state !== "ringing";
    hangupBtn.hidden = !inCall || inRoom;
    leaveBtn.hidden = !inRoom;
    // Invite: from an idle phone (a new room, with the peer chosen above), a connected 1:1 call (it becomes a
    // room) or a room, each with the peers not in it.
    const inviting = inRoom || (state === "connected" && Boolean(peer));
    inviteBtn.hidden = !(inviting || !callBtn.hidden);
    inviteSelect.hidden = !inviting;
    inviteBtn.textContent = inviting ? "Invite" : "Invite to a room";
    if (inviting) {
      const candidates = peers.filter((p) => !roomMembers.includes(p) && p !== peer);
      const chosen = inviteSelect.value;
      inviteSelect.replaceChildren(
        h("option", { value: "", textContent: candidates.length ? "Invite…" : "No one else to invite" }),
        ...candidates.map((p) => h("option", { value: p, textContent: p })),
      );
      inviteSelect.value = candidates.includes(chosen) ? chosen : "";
      inviteBtn.disabled = !candidates.length;
    } else {
      inviteBtn.disabled = false;
    }
    renderMembers(user, roomMembers, state === "ringing" ? [] : roomMembers);
    input.disabled = sendBtn.disabled = !(state === "connected" || inRoom);
    renderMedia();
    renderRtc();
  }

  /**
   * The members strip: each member with the state of our connection to it, this phone marked.
   * @param {string} user @param {string[]} all @param {string[]} shown
   */
  function renderMembers(user, all, shown) {
    members.hidden = !shown.length;
    const connections = model.get("connections") ?? {};
    members.replaceChildren(
      h("span", { class: "nbcall-members-title", textContent: `Room (${all.length})` }),
      ...shown.map((m) => {
        const self = m === user;
        const state = self ? "self" : (connections[m] ?? "connecting");
        return h("span", { class: `nbcall-member${self ? " nbcall-self" : ""}`, dataset: { peer: m, state }, title: self ? "this phone" : state }, [
          h("span", { class: "nbcall-dot" }),
          self ? `${m} (you)` : m,
        ]);
      }),
    );
  }

  /** The tiles of the video grid, by member: kept between renders so that a video never restarts. */
  /** @type {Map<string, {tile: HTMLElement, video: HTMLVideoElement, audio: HTMLAudioElement, label: HTMLElement}>} */
  const tiles = new Map();

  /**
   * One labelled tile per member in a room, each with its connection state. Ours (mirrored, muted) is small in
   * a corner, as our preview is in a 1:1 call, unless it is alone.
   */
  function renderGrid() {
    const user = model.get("user_id");
    const connections = model.get("connections") ?? {};
    const order = [user, ...(model.get("members") ?? []).filter((m) => m !== user)];
    // In an SFU room the members' media come through the SFU link; at most max_tiles remote tiles are shown,
    // those sending video first, and the others are heard (their tiles hidden, their audio playing).
    const sfu = phone.sfu;
    /** @param {string} m */
    const streamOf = (m) => (sfu ? sfu.remoteStreams.get(m) : phone.peers.get(m)?.remoteStream) ?? null;
    const { hidden } = phone.tiles((m) => (sfu ? sfu.videoMembers.has(m) : Boolean(streamOf(m)?.getVideoTracks().length)));
    for (const [m, t] of tiles) {
      if (order.includes(m)) continue;
      setSource(t.video, null);
      setSource(t.audio, null);
      t.tile.remove();
      tiles.delete(m);
    }
    for (const m of order) {
      const self = m === user;
      let t = tiles.get(m);
      if (!t) {
        const video = h("video", { class: "nbcall-tile-video", autoplay: true, playsInline: true, muted: true });
        const audio = h("audio", { class: "nbcall-tile-audio", autoplay: true });
        const label = h("div", { class: "nbcall-tile-label" });
        const tile = h("div", { class: `nbcall-tile${self ? " nbcall-self" : ""}`, dataset: { peer: m } }, [video, audio, label]);
        t = { tile, video, audio, label };
        tiles.set(m, t);
      }
      grid.append(t.tile); // in member order
      const state = self ? "self" : (connections[m] ?? "connecting");
      const stream = self ? phone.localStream : streamOf(m);
      const unseen = hidden.includes(m);
      t.tile.hidden = unseen;
      const hasVideo = !unseen && Boolean(stream?.getVideoTracks().length);
      t.tile.dataset.state = state;
      t.tile.classList.toggle("nbcall-has-video", hasVideo);
      t.tile.classList.toggle("nbcall-off", self && !model.get("camera_on"));
      t.label.textContent = self ? `${m} (you)` : `${m} · ${state}${stream && !hasVideo ? " · sound only" : ""}`;
      setSource(t.video, hasVideo ? stream : null);
      setSource(t.audio, !self && stream?.getAudioTracks().length ? stream : null);
    }
    grid.dataset.count = String(order.length - 1 - hidden.length);
    grid.dataset.hidden = String(hidden.length);
    gridNote.textContent = hiddenText(hidden.length);
    gridNote.hidden = !hidden.length;
    grid.append(gridNote);
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
    const inRoom = Boolean(model.get("room"));
    const remote = inRoom ? null : phone.remoteStream;
    const remoteHasVideo = Boolean(remote?.getVideoTracks().length);
    const roomMedia = inRoom && ([...phone.peers.values()].some((l) => l.remoteStream) || Boolean(phone.sfu?.remoteStreams.size));
    // A data-only phone keeps its compact look until someone sends it media.
    media.hidden = !wantsAudio && !wantsVideo && !remote && !roomMedia;
    media.classList.toggle("nbcall-grid-mode", inRoom);
    if (inRoom) renderGrid();
    else if (tiles.size) {
      for (const t of tiles.values()) setSource(t.video, null), setSource(t.audio, null);
      tiles.clear();
      grid.replaceChildren();
    }
    setSource(remoteVideo, remoteHasVideo ? remote : null);
    setSource(remoteAudio, remote?.getAudioTracks().length ? remote : null);
    const local = inRoom ? null : phone.localStream;
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
    const row = h("div", { class: `nbcall-msg nbcall-${m.dir}`, dataset: { kind: m.kind, peer: m.peer } }, [
      h("span", { class: "nbcall-msg-who", textContent: m.dir === "in" ? "←" : "→" }),
      h("span", { class: "nbcall-msg-kind", textContent: m.kind }),
      h("span", { class: "nbcall-msg-text", textContent: m.text }),
    ]);
    // In a room, who sent it (or who it went to).
    if (m.room) {
      const who = m.dir === "in" ? m.peer : m.peer ? `to ${m.peer}` : "to all";
      row.children[0].after(h("span", { class: "nbcall-msg-peer", textContent: who }));
    }
    return row;
  }

  // Lists grow by appending a row: redrawing hundreds of rows per message would hold up the page's
  // main thread, where the WebRTC callbacks run too.
  /** @param {HTMLElement} list @param {Node} row @param {number} keep */
  function append(list, row, keep) {
    list.append(row);
    while (list.childElementCount > keep) list.firstElementChild?.remove();
  }

  function renderProgress() {
    const report = phone.transfers.current;
    progress.hidden = !report;
    if (!report) return;
    progress.dataset.direction = report.direction;
    // Without a known total the bar is indeterminate (no value), as a browser draws it.
    if (report.total) progressBar.value = report.done / report.total;
    else progressBar.removeAttribute("value");
    progressLabel.textContent = progressText(report);
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
    // Several links (a room): a selector of the member whose connection is shown. In an SFU room the links
    // are our two to the SFU (the members are feeds on the subscriber link).
    const sfu = phone.sfu;
    const choices = sfu ? SFU_CHOICES : [...phone.peers.keys()].map((p) => [p, `connection to ${p}`]);
    const names = choices.map(([value]) => value);
    statsPeer.hidden = names.length < 2;
    if (Array.from(statsPeer.options, (o) => o.value).join("\n") !== names.join("\n")) {
      const chosen = statsPeer.value;
      statsPeer.replaceChildren(...choices.map(([value, text]) => h("option", { value, textContent: text })));
      statsPeer.value = names.includes(chosen) ? chosen : (names[0] ?? "");
    }
    const role = statsPeer.value === "subscriber" ? "subscriber" : "publisher";
    const shown = sfu ? sfu.panel(role) : (!statsPeer.hidden && phone.peers.get(statsPeer.value)) || phone.shown;
    rtcDetails.dataset.link = sfu ? `sfu-${role}` : "peer";
    const s = shown?.stats;
    const rtc = shown?.rtc ?? {};
    const channel = shown && "channel" in shown ? shown.channel : null;
    /** @type {[string, string | undefined][]} */
    const rows = [
      ...(sfu ? /** @type {[string, string][]} */ ([["link", SFU_LINKS[role]]]) : []),
      ["connection", rtc.connectionState],
      ["ICE connection", rtc.iceConnectionState],
      ["ICE gathering", rtc.iceGatheringState],
      ["signaling", rtc.signalingState],
      ["data channel", shown && "channelText" in shown ? shown.channelText : channel ? `${channel.label} (${channel.readyState})` : undefined],
      ["round-trip time", s?.rtt_ms != null ? `${s.rtt_ms} ms` : undefined],
      ["sent / received", s ? `${s.bytes_sent} / ${s.bytes_received} bytes` : undefined],
      ["bitrate out / in", s?.send_kbps != null ? `${s.send_kbps} / ${s.receive_kbps} kbit/s` : undefined],
      ["local candidate", candidateText(s?.local_candidate)],
      ["remote candidate", candidateText(s?.remote_candidate)],
      ...rtpRows("audio in", s?.audio_in),
      ...rtpRows("audio out", s?.audio_out),
      ...rtpRows("video in", s?.video_in),
      ...rtpRows("video out", s?.video_out),
      ...(sfu && role === "subscriber" ? feedRows(sfu.feedStats) : []),
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
    ["progress", throttled(PROGRESS_MS, soon, renderProgress, abort.signal)],
    ["rtc", () => soon(renderRtc)],
    ["stats", () => soon(renderRtc)],
    ["media", () => soon(renderMedia)],
    ["rtc", () => soon(renderMedia)], // a member's link opened or closed: its tile
  ];
  for (const [name, fn] of events) phone.addEventListener(name, fn, on);
  const unfollow = onChanges(model, SHOWN_TRAITS, () => soon(renderState));
  renderState();
  renderChat();
  renderProgress();
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

/**
 * Asks `soon` for `render` at most once every `ms`, counted from when it last ran (a late frame does not bring
 * the next one closer); the last ask of a burst still gets its run. Nothing after `signal` aborts.
 * @param {number} ms @param {(fn: () => void) => void} soon @param {() => void} render @param {AbortSignal} signal
 */
function throttled(ms, soon, render, signal) {
  let ran = -Infinity;
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  let timer;
  const run = () => {
    ran = performance.now();
    render();
  };
  signal.addEventListener("abort", () => clearTimeout(timer));
  return () => {
    if (timer !== undefined || signal.aborted) return;
    const wait = ran + ms - performance.now();
    if (wait <= 0) soon(run);
    else
      timer = setTimeout(() => {
        timer = undefined;
        soon(run);
      }, wait);
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
