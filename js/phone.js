// The browser half of a phone: one per widget model (not per view). It owns the RTCPeerConnection and the
// data channel, and talks to its Python half with custom messages only:
//   Python -> browser: start_call, remote (a signaling message from the peer), accept, close, send, log, history
//   browser -> Python: hello, signal (to relay to the peer), rtc, channel, message, send_failed, stats,
//                      media (local and remote tracks, getUserMedia errors), failure, ui (a button pressed)
// Media: what to send comes from the `audio`/`video` traits (true or MediaTrackConstraints), whether the
// microphone and camera tracks are enabled from `mic_on`/`camera_on`; Python sets them all.
// Browser events travel as custom messages (tell), never as trait changes: a trait change sent while a cell
// awaits can wedge the model's later updates (see the project's e2e notes).

import { FrameDecoder, PROTOCOL, encodeFrames } from "./framing.js";
import { summarizeStats } from "./stats.js";

const MAX_LOG = 500;
const MAX_CHAT = 200;
// Frames of 64 KiB fit every browser's SCTP message limit, and 1 MiB queued keeps the channel busy
// without piling the whole payload into the browser's send buffer.
const FRAME_SIZE = 64 * 1024;
const HIGH_WATER = 1024 * 1024;
// Received messages reach Python in parts: Jupyter's websocket refuses messages over 10 MiB by default.
const PART_SIZE = 4 * 1024 * 1024;
const STATS_INTERVAL_MS = 1000;
const STATS_HISTORY = 60;
const KINDS = /** @type {const} */ (["audio", "video"]);

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * @typedef {import("./framing.js").Kind} Kind
 * @typedef {{t: number, dir: "in" | "out" | "event", type: string, size: number, detail: any}} LogEntry
 * @typedef {{t: number, dir: "in" | "out", kind: Kind, text: string, size: number}} ChatEntry
 */

export class BrowserPhone extends EventTarget {
  /** @param {any} model */
  constructor(model) {
    super();
    this.model = model;
    /** @type {RTCPeerConnection | null} */
    this.pc = null;
    /** @type {RTCDataChannel | null} */
    this.channel = null;
    /** @type {RTCIceCandidateInit[]} */
    this.pendingCandidates = [];
    /** Whether the peer is an nbcall phone, which understands framed messages (see framing.js). */
    this.framed = false;
    /** @type {LogEntry[]} */
    this.log = [];
    /** @type {ChatEntry[]} */
    this.chat = [];
    /** @type {Record<string, string>} */
    this.rtc = {};
    /** @type {import("./stats.js").StatsSummary | null} */
    this.stats = null;
    /** The last samples, oldest first, for the sparklines. @type {import("./stats.js").StatsSummary[]} */
    this.statsHistory = [];
    /** Our camera and microphone during a call. @type {MediaStream | null} */
    this.localStream = null;
    /** What the peer sends us. @type {MediaStream | null} */
    this.remoteStream = null;
    this.statsTimer = 0;
    // Signaling steps run one after another: a candidate must not overtake the description it belongs to.
    this.steps = Promise.resolve();
    /** Sends run one after another too, so that their frames never interleave. */
    this.sends = Promise.resolve();
    /** Messages for Python not sent yet, see tell(). @type {Record<string, unknown>[]} */
    this.batch = [];
    this.onKernelMessage = this.onKernelMessage.bind(this);
    this.applyEnabled = this.applyEnabled.bind(this);
    model.on("msg:custom", this.onKernelMessage);
    model.on("change:mic_on change:camera_on", this.applyEnabled);
    this.tell({ type: "hello" });
  }

  /**
   * Send a message to the Python half. Messages without buffers that follow each other in one task go as
   * one batch, in order: each message costs the kernel a round of its own (busy/idle status, a loop turn).
   * @param {Record<string, unknown>} message @param {ArrayBuffer[]} [buffers]
   */
  tell(message, buffers) {
    if (buffers) {
      this.flush();
      this.model.send(message, undefined, buffers);
      return;
    }
    this.batch.push(message);
    if (this.batch.length === 1) queueMicrotask(() => this.flush());
  }

  flush() {
    const batch = this.batch;
    this.batch = [];
    if (batch.length === 1) this.model.send(batch[0]);
    else if (batch.length > 1) this.model.send({ type: "batch", messages: batch });
  }

  dispose() {
    this.model.off("msg:custom", this.onKernelMessage);
    this.model.off("change:mic_on change:camera_on", this.applyEnabled);
    this.closeCall();
  }

  /** @param {any} msg @param {DataView[]} buffers */
  onKernelMessage(msg, buffers) {
    switch (msg.type) {
      case "start_call":
        return this.step(() => this.startCall(msg.peer, msg.ice_servers));
      case "remote":
        return this.step(() => this.onRemote(msg.signal, msg.ice_servers ?? []));
      case "accept":
        return this.step(() => this.accept());
      case "close":
        return this.step(async () => this.closeCall());
      case "send":
        return this.enqueueSend(msg.id, msg.kind, bytesOf(buffers[0]));
      case "log":
        return this.addLog(msg.entry);
      case "history":
        this.log = msg.log;
        this.emit("log");
        return;
    }
  }

  /** @param {() => Promise<void>} fn */
  step(fn) {
    this.steps = this.steps.then(fn).catch((err) => this.fail(err));
  }

  /** @param {unknown} err */
  fail(err) {
    const message = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
    this.tell({ type: "failure", message });
  }

  /** @param {string} peer @param {RTCIceServer[]} iceServers */
  async startCall(peer, iceServers) {
    const pc = this.newPeerConnection(iceServers);
    const stream = await this.openLocalMedia(pc);
    if (pc !== this.pc) return; // hung up while the browser asked for the camera
    // One m-line per medium we would like: sendrecv with a track, recvonly without one (no camera, or
    // permission denied), so that we still receive the peer's. A data-only phone offers no media sections.
    for (const kind of KINDS) {
      const track = stream?.getTracks().find((t) => t.kind === kind);
      if (track) pc.addTransceiver(track, { direction: "sendrecv", streams: [/** @type {MediaStream} */ (stream)] });
      else if (this.model.get(kind)) pc.addTransceiver(kind, { direction: "recvonly" });
    }
    this.attachChannel(pc.createDataChannel("nbcall"));
    await pc.setLocalDescription(await pc.createOffer());
    // "framing" tells another nbcall phone that we frame typed and chunked messages; other clients ignore it.
    this.signal({ type: "call", sdp: JSON.stringify(pc.localDescription), framing: PROTOCOL });
    this.emit("rtc");
  }

  async accept() {
    const pc = this.pc;
    if (!pc || pc.signalingState !== "have-remote-offer") {
      throw new Error(`no offer to answer (signaling state ${pc ? pc.signalingState : "no connection"})`);
    }
    const stream = await this.openLocalMedia(pc);
    if (pc !== this.pc) return;
    // The offer decides which media sections exist: put each local track on the caller's section of its kind.
    // A kind the caller did not offer cannot be sent in this call (it would need a new offer): drop it.
    const notOffered = [];
    for (const track of stream?.getTracks() ?? []) {
      const transceiver = pc.getTransceivers().find((t) => t.receiver.track.kind === track.kind && !t.sender.track);
      if (!transceiver) {
        track.stop();
        stream?.removeTrack(track);
        notOffered.push({ kind: track.kind, name: "NotOffered", message: "no media section of that kind in the offer" });
        continue;
      }
      await transceiver.sender.replaceTrack(track);
      transceiver.sender.setStreams?.(/** @type {MediaStream} */ (stream));
      transceiver.direction = "sendrecv";
    }
    if (!this.localStream?.getTracks().length) this.localStream = null;
    if (notOffered.length) this.reportMedia(notOffered);
    await pc.setLocalDescription(await pc.createAnswer());
    this.signal({ type: "answer", sdp: JSON.stringify(pc.localDescription), framing: PROTOCOL });
  }

  /**
   * @param {{type: string, sdp?: string, candidate?: string, framing?: string}} signal
   * @param {RTCIceServer[]} iceServers
   */
  async onRemote(signal, iceServers) {
    // Frame only for a peer that said it understands; any other client gets plain messages.
    const framed = signal.framing === PROTOCOL;
    if (signal.type === "call") {
      const pc = this.newPeerConnection(iceServers);
      this.framed = framed;
      await pc.setRemoteDescription(JSON.parse(signal.sdp ?? ""));
      await this.flushCandidates();
    } else if (signal.type === "answer") {
      if (!this.pc) return; // the call ended before the answer arrived
      this.framed = framed;
      await this.pc.setRemoteDescription(JSON.parse(signal.sdp ?? ""));
      await this.flushCandidates();
    } else if (signal.type === "ice") {
      this.pendingCandidates.push(JSON.parse(signal.candidate ?? ""));
      if (this.pc?.remoteDescription) await this.flushCandidates();
    }
  }

  async flushCandidates() {
    const pc = this.pc;
    if (!pc) return;
    const candidates = this.pendingCandidates;
    this.pendingCandidates = [];
    for (const c of candidates) await pc.addIceCandidate(c);
  }

  /** @param {RTCIceServer[]} iceServers */
  newPeerConnection(iceServers) {
    this.closeCall();
    const pc = new RTCPeerConnection({ iceServers });
    this.pc = pc;
    this.framed = false;
    this.rtc = {};
    this.stats = null;
    this.statsHistory = [];
    // Which STUN/TURN servers ICE may use (their URLs only: credentials stay out of the log).
    const servers = pc.getConfiguration().iceServers ?? [];
    const urls = servers.flatMap((s) => (Array.isArray(s.urls) ? s.urls : [s.urls]));
    this.report({ type: "rtc", name: "iceServers", value: urls }, "iceServers", urls);
    pc.onicecandidate = (e) => {
      if (pc === this.pc && e.candidate) this.signal({ type: "ice", candidate: JSON.stringify(e.candidate) });
    };
    pc.ondatachannel = (e) => this.attachChannel(e.channel);
    pc.ontrack = (e) => {
      if (pc !== this.pc) return;
      // One stream of our own for everything the peer sends: senders may or may not name a stream.
      this.remoteStream ??= new MediaStream();
      this.remoteStream.addTrack(e.track);
      e.track.addEventListener("ended", () => this.emit("media"));
      this.reportMedia();
      this.emit("media");
    };
    for (const name of ["connectionState", "iceConnectionState", "iceGatheringState", "signalingState"]) {
      const report = () => {
        if (pc !== this.pc) return;
        const value = /** @type {any} */ (pc)[name];
        this.rtc[name] = value;
        this.report({ type: "rtc", name, value }, name, value);
        this.emit("rtc");
      };
      pc.addEventListener(name.toLowerCase().replace("state", "statechange"), report);
      report();
    }
    this.statsTimer = window.setInterval(() => this.sampleStats(pc), STATS_INTERVAL_MS);
    return pc;
  }

  /**
   * Ask for the camera and microphone this phone would like to send. A refusal or a missing device is reported
   * to Python and the call goes on without that medium. Returns null when nothing was wanted or granted.
   * @param {RTCPeerConnection} pc
   * @returns {Promise<MediaStream | null>}
   */
  async openLocalMedia(pc) {
    /** @type {Record<string, boolean | MediaTrackConstraints>} */
    const wanted = {};
    for (const kind of KINDS) if (this.model.get(kind)) wanted[kind] = this.model.get(kind);
    const kinds = Object.keys(wanted);
    if (!kinds.length) return null;
    /** @type {{kind: string, name: string, message: string}[]} */
    const errors = [];
    /** @type {MediaStream | null} */ let stream = null;
    if (!navigator.mediaDevices?.getUserMedia) {
      // Browsers hide mediaDevices on pages that are not secure contexts (not https, not localhost).
      for (const kind of kinds) errors.push({ kind, name: "InsecureContext", message: "navigator.mediaDevices is undefined" });
    } else {
      try {
        stream = await navigator.mediaDevices.getUserMedia(wanted);
      } catch (err) {
        // Refused is refused: asking again per device would only show the user more prompts.
        const refused = err instanceof DOMException && err.name === "NotAllowedError";
        if (kinds.length === 1 || refused) kinds.forEach((kind) => errors.push(mediaError(kind, err)));
        else {
          // Both at once failed: try each alone, so that a missing camera still leaves the microphone.
          stream = new MediaStream();
          for (const kind of kinds) {
            try {
              const one = await navigator.mediaDevices.getUserMedia({ [kind]: wanted[kind] });
              one.getTracks().forEach((t) => stream?.addTrack(t));
            } catch (e) {
              errors.push(mediaError(kind, e));
            }
          }
        }
      }
    }
    if (pc !== this.pc) {
      stream?.getTracks().forEach((t) => t.stop());
      return null;
    }
    this.localStream = stream?.getTracks().length ? stream : null;
    this.applyEnabled();
    this.reportMedia(errors);
    return this.localStream;
  }

  /** Enable or disable the local tracks as Python asked: a disabled track sends silence or black frames. */
  applyEnabled() {
    for (const track of this.localStream?.getTracks() ?? []) {
      track.enabled = Boolean(this.model.get(track.kind === "audio" ? "mic_on" : "camera_on"));
    }
    this.emit("media");
  }

  /** Tell Python which media flow each way. @param {{kind: string, name: string, message: string}[]} errors */
  reportMedia(errors = []) {
    /** @param {MediaStream | null} stream */
    const has = (stream) => Object.fromEntries(KINDS.map((k) => [k, Boolean(stream?.getTracks().some((t) => t.kind === k))]));
    this.tell({ type: "media", local: has(this.localStream), remote: has(this.remoteStream), errors });
  }

  /** @param {RTCPeerConnection} pc */
  async sampleStats(pc) {
    if (pc !== this.pc || pc.connectionState !== "connected") return;
    this.stats = await summarizeStats(pc, this.stats);
    this.statsHistory.push(this.stats);
    if (this.statsHistory.length > STATS_HISTORY) this.statsHistory.shift();
    this.tell({ type: "stats", stats: this.stats });
    this.emit("stats");
  }

  /** @param {RTCDataChannel} channel */
  attachChannel(channel) {
    // The first channel carries what we send; every channel's messages are received (any label).
    if (!this.channel) this.channel = channel;
    channel.binaryType = "arraybuffer";
    const frames = new FrameDecoder();
    channel.onopen = () => {
      const event = { type: "channel", state: "open", label: channel.label, framed: this.framed };
      this.report(event, "datachannel-open", event);
      this.emit("rtc");
    };
    channel.onclose = () => {
      if (channel !== this.channel) return;
      const event = { type: "channel", state: "closed", label: channel.label };
      this.report(event, "datachannel-closed", event);
      this.emit("rtc");
    };
    channel.onmessage = (e) => {
      if (typeof e.data === "string") return this.receive("str", encoder.encode(e.data));
      const bytes = new Uint8Array(e.data);
      if (!this.framed) return this.receive("bytes", bytes);
      try {
        const message = frames.push(bytes);
        if (message) this.receive(message.kind, message.payload);
      } catch (err) {
        this.fail(err);
      }
    };
  }

  /** @param {Kind} kind @param {Uint8Array} payload */
  receive(kind, payload) {
    this.addChat("in", kind, payload);
    const parts = Math.max(1, Math.ceil(payload.length / PART_SIZE));
    for (let i = 0; i < parts; i++) {
      // A standalone ArrayBuffer per part: the widget channel mishandles views into a larger buffer.
      const start = payload.byteOffset + i * PART_SIZE;
      const part = /** @type {ArrayBuffer} */ (payload.buffer).slice(start, Math.min(start + PART_SIZE, payload.byteOffset + payload.length));
      this.tell({ type: "message", kind, last: i === parts - 1 }, [part]);
    }
  }

  /** Send text typed in the widget straight onto the data channel. @param {string} text */
  sendText(text) {
    this.enqueueSend(null, "str", encoder.encode(text));
  }

  /** @param {string | null} id @param {Kind} kind @param {Uint8Array} payload */
  enqueueSend(id, kind, payload) {
    this.sends = this.sends.then(async () => {
      try {
        await this.sendNow(kind, payload);
        this.addChat("out", kind, payload);
      } catch (err) {
        const message = err instanceof Error ? err.message : String(err);
        if (id !== null) this.tell({ type: "send_failed", id, message });
        else this.fail(err);
      }
    });
  }

  /** @param {Kind} kind @param {Uint8Array} payload */
  async sendNow(kind, payload) {
    const channel = this.channel;
    if (!channel || channel.readyState !== "open") {
      throw new Error(`the data channel is not open (${channel ? channel.readyState : "no call"})`);
    }
    if (!this.framed) {
      // A plain peer gets plain frames: text for str and JSON, binary for bytes.
      if (kind === "bytes") channel.send(/** @type {Uint8Array<ArrayBuffer>} */ (payload));
      else channel.send(decoder.decode(payload));
      return;
    }
    const maxMessage = this.pc?.sctp?.maxMessageSize || FRAME_SIZE;
    channel.bufferedAmountLowThreshold = HIGH_WATER / 2;
    for (const frame of encodeFrames(kind, payload, Math.min(FRAME_SIZE, maxMessage))) {
      if (channel.bufferedAmount > HIGH_WATER) await drained(channel);
      channel.send(/** @type {Uint8Array<ArrayBuffer>} */ (frame));
    }
  }

  /** @param {{type: string, sdp?: string, candidate?: string, framing?: string}} signal */
  signal(signal) {
    this.tell({ type: "signal", signal });
  }

  closeCall() {
    window.clearInterval(this.statsTimer);
    const pc = this.pc;
    this.pc = null;
    this.channel = null;
    this.pendingCandidates = [];
    const media = this.localStream || this.remoteStream;
    // Stop every local track, sent or not, so that the camera light goes off.
    this.localStream?.getTracks().forEach((t) => t.stop());
    this.localStream = null;
    this.remoteStream = null;
    if (pc) {
      pc.getSenders().forEach((s) => s.track?.stop());
      pc.close();
      this.rtc = { ...this.rtc, connectionState: "closed" };
      this.emit("rtc");
    }
    if (media) {
      this.reportMedia();
      this.emit("media");
    }
  }

  /**
   * Tell Python about a peer-connection event, and log it here at once: Python logs it too but does not
   * echo it back, which would double the messages while a call is being set up.
   * @param {Record<string, unknown>} message @param {string} type @param {unknown} detail
   */
  report(message, type, detail) {
    this.tell(message);
    this.addLog({ t: Date.now() / 1000, dir: "event", type, size: 0, detail });
  }

  /** @param {LogEntry} entry */
  addLog(entry) {
    this.log.push(entry);
    if (this.log.length > MAX_LOG) this.log.splice(0, this.log.length - MAX_LOG);
    this.emit("log-entry", entry);
  }

  /** @param {"in" | "out"} dir @param {Kind} kind @param {Uint8Array} payload */
  addChat(dir, kind, payload) {
    const text = kind === "bytes" ? previewBytes(payload) : decoder.decode(payload.subarray(0, 2000));
    const entry = { t: Date.now(), dir, kind, text, size: payload.length };
    this.chat.push(entry);
    if (this.chat.length > MAX_CHAT) this.chat.splice(0, this.chat.length - MAX_CHAT);
    this.emit("chat-entry", entry);
  }

  /** Tell the views; ``detail`` is what was added, for views that append rather than redraw. */
  emit(/** @type {string} */ what, /** @type {unknown} */ detail = undefined) {
    this.dispatchEvent(new CustomEvent(what, { detail }));
  }
}

/** @param {string} kind @param {unknown} err */
function mediaError(kind, err) {
  const e = /** @type {{name?: string, message?: string}} */ (err);
  return { kind, name: e?.name ?? "Error", message: e?.message ?? String(err) };
}

/** @param {RTCDataChannel} channel */
function drained(channel) {
  return new Promise((resolve, reject) => {
    const done = () => {
      channel.removeEventListener("bufferedamountlow", done);
      channel.removeEventListener("close", closed);
      resolve(undefined);
    };
    const closed = () => {
      channel.removeEventListener("bufferedamountlow", done);
      reject(new Error("the data channel closed while sending"));
    };
    channel.addEventListener("bufferedamountlow", done);
    channel.addEventListener("close", closed);
  });
}

/** @param {DataView | ArrayBuffer | undefined} buffer */
function bytesOf(buffer) {
  if (!buffer) return new Uint8Array(0);
  if (buffer instanceof ArrayBuffer) return new Uint8Array(buffer);
  return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
}

/** @param {Uint8Array} bytes */
function previewBytes(bytes) {
  const head = Array.from(bytes.subarray(0, 16), (b) => b.toString(16).padStart(2, "0")).join(" ");
  return `${bytes.length} bytes: ${head}${bytes.length > 16 ? " …" : ""}`;
}
