// The connection to one remote peer: its RTCPeerConnection and the offer/answer/ICE negotiation, its data
// channel, its camera and microphone, its remote stream and its statistics. The phone holds one PeerLink per
// peer ID; close() releases everything (Chrome allows only about 500 peer connections per tab's lifetime).
// The camera and microphone are the phone's, shared by its links (media.js SharedMedia). A link that is up
// renegotiates by the perfect-negotiation pattern: in glare the polite side rolls back, the impolite one ignores.

import { EXTENSIONS, PROTOCOL } from "./framing.js";
import { receiver, sendParts } from "./channel.js";
import { PROGRESS_MIN } from "./progress.js";
import { MEDIA_KINDS } from "./media.js";
import { summarizeStats } from "./stats.js";

/**
 * @typedef {import("./framing.js").Kind} Kind
 * @typedef {import("./protocol.js").Signal} Signal
 * @typedef {import("./protocol.js").MediaError} MediaError
 * @typedef {import("./protocol.js").ToPythonType} ToPythonType
 * @typedef {import("./protocol.js").ToPythonFields} ToPythonFields
 * @typedef {import("./link.js").Settings} Settings
 * @typedef {import("./media.js").Wanted} Wanted
 * @typedef {import("./stats.js").StatsSummary} StatsSummary
 * @typedef {"rtc" | "stats" | "media"} PeerEvent
 * @typedef {{bytes: number, head: Uint8Array}} Streamed the parts of a message already passed on, and its start
 */

/**
 * What a PeerLink needs from its phone.
 * @typedef {{
 *   tell: <K extends ToPythonType>(type: K, fields: ToPythonFields[K]) => void,
 *   event: (type: string, detail: unknown) => void,
 *   emit: (what: PeerEvent) => void,
 *   settings: () => Settings,
 *   wanted: () => Wanted,
 *   enabled: () => {mic_on: boolean, camera_on: boolean},
 *   userId: () => string,
 *   inRoom: () => boolean,
 *   acquireMedia: (link: PeerLink) => Promise<{stream: MediaStream | null, errors: MediaError[]}>,
 *   releaseMedia: (link: PeerLink) => void,
 *   dropTrack: (link: PeerLink, track: MediaStreamTrack) => void,
 *   mediaChanged: (errors?: MediaError[]) => void,
 *   received: (peer: string, kind: Kind, payload: Uint8Array<ArrayBuffer>, streamed: Streamed | null) => void,
 *   streamed: (peer: string, kind: Kind, part: Uint8Array<ArrayBuffer>, first: boolean) => void,
 *   partial: (peer: string, direction: "in" | "out", done: number, total: number | null) => void,
 *   fail: (peer: string, err: unknown) => void,
 * }} PeerHost
 */

/** The peer connection's states that are reported to Python and shown, with their change events. */
const STATES = /** @type {const} */ ([
  ["connectionState", "connectionstatechange"],
  ["iceConnectionState", "iceconnectionstatechange"],
  ["iceGatheringState", "icegatheringstatechange"],
  ["signalingState", "signalingstatechange"],
]);

/** What an nbcall end says of its framing in its call and answer (see framing.js). */
const FRAMING = { framing: PROTOCOL, framing_ext: [...EXTENSIONS] };

export class PeerLink {
  /**
   * Open a peer connection to `peer` with this configuration (STUN/TURN servers, ICE transport policy);
   * negotiation starts with offer() (we call) or takeOffer() (they call).
   * @param {string} peer @param {RTCConfiguration} config @param {PeerHost} host
   */
  constructor(peer, config, host) {
    this.peer = peer;
    this.host = host;
    this.pc = new RTCPeerConnection(config);
    this.closed = false;
    /** Candidates that arrived before the remote description they belong to. @type {RTCIceCandidateInit[]} */
    this.pending = [];
    // Signaling steps run one after another: a candidate must not overtake the description it belongs to.
    this.steps = Promise.resolve();
    /** Sends run one after another too, so that their frames never interleave. */
    this.sends = Promise.resolve();
    /** The channel we send on: the first one opened, by us or by the peer. @type {RTCDataChannel | null} */
    this.channel = null;
    /** The receivers of its channels (see attachChannel). @type {ReturnType<typeof receiver>[]} */
    this.receivers = [];
    /** Whether the peer is an nbcall phone, which understands framed messages (see framing.js). */
    this.framed = false;
    /** Whether it also understands the "length" extension: its large messages' lengths are announced. */
    this.announceLength = false;
    /** The states last seen, for the view. @type {Record<string, string>} */
    this.rtc = {};
    /** @type {StatsSummary | null} */
    this.stats = null;
    /** The last samples, oldest first, for the sparklines. @type {StatsSummary[]} */
    this.statsHistory = [];
    /** The phone's camera and microphone, when this link sends some of it. @type {MediaStream | null} */
    this.localStream = null;
    // Perfect negotiation (https://w3c.github.io/webrtc-pc/#perfect-negotiation-example). The polite side is
    // the smaller ID, unless the peer says it is never polite (a Python peer, which cannot roll back).
    this.polite = host.userId() < peer;
    /** Whether the first offer/answer exchange is done: later offers are renegotiations. */
    this.negotiated = false;
    /** Whether we are making an offer, or ignore theirs (impolite side in glare). */
    this.makingOffer = false;
    this.ignoreOffer = false;
    /**
     * What the peer sends us: one stream of our own, since senders may or may not name a stream.
     * @type {MediaStream | null}
     */
    this.remoteStream = null;

    const pc = this.pc;
    // Which STUN/TURN servers ICE may use (their URLs only: credentials stay out of the log).
    const servers = pc.getConfiguration().iceServers ?? [];
    const urls = servers.flatMap((s) => (Array.isArray(s.urls) ? s.urls : [s.urls]));
    this.report("iceServers", urls);
    pc.onicecandidate = (e) => {
      if (!this.closed && e.candidate) this.signal({ type: "ice", candidate: JSON.stringify(e.candidate) });
    };
    pc.ondatachannel = (e) => this.attachChannel(e.channel);
    // Only a link that is up renegotiates on its own: the first offer is made by offer(), when Python says.
    pc.onnegotiationneeded = () => {
      if (this.negotiated && !this.closed) this.step(() => this.renegotiate());
    };
    pc.ontrack = (e) => {
      if (this.closed) return;
      this.remoteStream ??= new MediaStream();
      this.remoteStream.addTrack(e.track);
      e.track.addEventListener("ended", () => host.emit("media"));
      host.mediaChanged();
      host.emit("media");
    };
    for (const [name, event] of STATES) {
      const report = () => {
        if (this.closed) return;
        this.rtc[name] = pc[name];
        this.report(name, pc[name]);
        host.emit("rtc");
      };
      pc.addEventListener(event, report);
      report();
    }
    // A STUN/TURN request that failed (such as TURN credentials refused, 401): Python makes it the phone's error.
    pc.addEventListener("icecandidateerror", ({ errorCode, errorText, url }) => {
      if (!this.closed) this.report("icecandidateerror", { errorCode, errorText, url });
    });
    this.statsTimer = setInterval(() => this.sampleStats(), host.settings().stats_interval_ms);
  }

  /**
   * Run a signaling step after the ones before it. A step that fails is reported to Python, unless the
   * connection was closed meanwhile (closing makes the pending steps fail, and that is no news).
   * @param {() => Promise<void>} fn
   */
  step(fn) {
    this.steps = this.steps.then(fn).catch((err) => {
      if (!this.closed) this.host.fail(this.peer, err);
    });
  }

  /** We call: add our media and the data channel, and send the offer. */
  async offer() {
    const pc = this.pc;
    const { stream, errors } = await this.openLocalMedia();
    if (this.closed) return; // hung up while the browser asked for the camera
    // One m-line per medium we would like: sendrecv with a track, recvonly without one (no camera, or
    // permission denied), so that we still receive the peer's. A data-only phone offers no media sections.
    const wanted = this.host.wanted();
    for (const kind of MEDIA_KINDS) {
      const track = stream?.getTracks().find((t) => t.kind === kind);
      if (stream && track) pc.addTransceiver(track, { direction: "sendrecv", streams: [stream] });
      else if (wanted[kind]) pc.addTransceiver(kind, { direction: "recvonly" });
    }
    this.localStream = this.sentTracks().length ? stream : null;
    // A data-only call has no media to report: a report would cost a kernel round in the middle of the setup.
    if (stream || errors.length) this.host.mediaChanged(errors);
    this.attachChannel(pc.createDataChannel("nbcall"));
    await this.sendOffer();
  }

  /** A link that is up needs a new offer (a track added or removed): make it, unless a negotiation is on. */
  async renegotiate() {
    if (this.closed || this.pc.signalingState !== "stable") return;
    await this.sendOffer();
  }

  async sendOffer() {
    const pc = this.pc;
    this.makingOffer = true;
    try {
      await pc.setLocalDescription(await pc.createOffer());
    } finally {
      this.makingOffer = false;
    }
    if (this.closed) return;
    // "framing" tells another nbcall phone that we frame typed and chunked messages; other clients ignore it.
    this.signal({ type: "call", sdp: JSON.stringify(pc.localDescription), ...FRAMING });
    this.host.emit("rtc");
  }

  /**
   * Whether an offer from our peer belongs to this connection (a renegotiation, or glare) rather than to a
   * new one: the link is alive and the offer comes from the same session (the SDP's o= line), if we know it.
   * @param {Signal} signal
   */
  continues(signal) {
    if (this.closed || ["failed", "closed"].includes(this.pc.connectionState)) return false;
    const known = sessionOf(this.pc.remoteDescription?.sdp);
    return known === null || known === sessionOf(parseDescription(signal.sdp)?.sdp);
  }

  /** They call: take their offer (answer() answers it once the user accepts). @param {Signal} signal */
  async takeOffer(signal) {
    const pc = this.pc;
    // A peer that never rolls back (a Python peer) says so: then we are the polite one.
    if (signal.polite === false) this.polite = true;
    const glare = this.makingOffer || pc.signalingState !== "stable";
    this.ignoreOffer = glare && !this.polite;
    if (this.ignoreOffer) {
      // The impolite side keeps its own offer; the polite peer rolls back and answers it.
      this.host.event("offer-ignored", { peer: this.peer, reason: "glare: we are the impolite side" });
      return;
    }
    if (glare) {
      this.host.event("rollback", { peer: this.peer, reason: "glare: we are the polite side" });
      await pc.setLocalDescription({ type: "rollback" });
    }
    if (!this.negotiated) this.takeFraming(signal);
    await pc.setRemoteDescription(JSON.parse(signal.sdp ?? ""));
    await this.addPending();
  }

  /** Frame only for a peer that said it understands; any other client gets plain messages. @param {Signal} signal */
  takeFraming(signal) {
    this.framed = signal.framing === PROTOCOL;
    this.announceLength = this.framed && Array.isArray(signal.framing_ext) && signal.framing_ext.includes("length");
  }

  /** Answer the offer taken: open the camera and microphone and send the answer. */
  async answer() {
    const pc = this.pc;
    if (this.ignoreOffer) return; // the offer we ignored in glare: ours stands
    if (pc.signalingState !== "have-remote-offer") {
      throw new Error(`no offer from ${this.peer} to answer (signaling state ${pc.signalingState})`);
    }
    if (this.negotiated) {
      // A renegotiation: the tracks are in place already, only the answer is new.
      await pc.setLocalDescription(await pc.createAnswer());
      this.signal({ type: "answer", sdp: JSON.stringify(pc.localDescription), ...FRAMING });
      return;
    }
    const { stream, errors } = await this.openLocalMedia();
    if (this.closed) return;
    // The offer decides which media sections exist: put each local track on the caller's section of its kind.
    // A kind the caller did not offer cannot be sent in this call (it would need a new offer): drop it.
    // In a room a member offers us only what it would like itself (a data-only member: no media section), so
    // the kinds it did not offer go in a new offer of ours, right after this answer.
    /** @type {MediaError[]} */
    const notOffered = [];
    /** @type {MediaStreamTrack[]} */
    const later = [];
    for (const track of stream?.getTracks() ?? []) {
      const transceiver = pc.getTransceivers().find((t) => t.receiver.track.kind === track.kind && !t.sender.track);
      if (stream && !transceiver && this.host.inRoom()) {
        later.push(track);
        continue;
      }
      if (!stream || !transceiver) {
        this.host.dropTrack(this, track);
        const message = "no media section of that kind in the offer";
        notOffered.push({ kind: track.kind, name: "NotOffered", message });
        continue;
      }
      await transceiver.sender.replaceTrack(track);
      transceiver.sender.setStreams?.(stream);
      transceiver.direction = "sendrecv";
    }
    for (const track of later) pc.addTransceiver(track, { direction: "sendrecv", streams: stream ? [stream] : [] });
    this.localStream = this.sentTracks().length ? stream : null;
    if (stream || errors.length || notOffered.length) this.host.mediaChanged([...errors, ...notOffered]);
    await pc.setLocalDescription(await pc.createAnswer());
    this.negotiated = true;
    this.signal({ type: "answer", sdp: JSON.stringify(pc.localDescription), ...FRAMING });
    if (later.length) {
      this.host.event("renegotiate", { peer: this.peer, reason: `to send ${later.map((t) => t.kind).join(" and ")}` });
      await this.renegotiate();
    }
  }

  /** Their answer to our offer. @param {Signal} signal */
  async takeAnswer(signal) {
    if (this.pc.signalingState !== "have-local-offer") {
      // An answer to an offer we rolled back in glare: nothing waits for it.
      this.host.event("answer-ignored", { peer: this.peer, signalingState: this.pc.signalingState });
      return;
    }
    if (!this.negotiated) this.takeFraming(signal);
    await this.pc.setRemoteDescription(JSON.parse(signal.sdp ?? ""));
    this.negotiated = true;
    await this.addPending();
  }

  /** One of their ICE candidates: added now, or kept until the remote description is set. @param {Signal} signal */
  async takeCandidate(signal) {
    this.pending.push(JSON.parse(signal.candidate ?? ""));
    if (this.pc.remoteDescription) await this.addPending();
  }

  async addPending() {
    const candidates = this.pending;
    this.pending = [];
    for (const c of candidates) {
      try {
        await this.pc.addIceCandidate(c);
      } catch (err) {
        if (!this.ignoreOffer) throw err; // the candidates of an offer we ignored have nowhere to go
      }
    }
  }

  /**
   * The camera and microphone this phone would like to send, shared with its other links. A refusal or a
   * missing device comes back in `errors` (to report once the tracks are placed): the call goes on without it.
   * @returns {Promise<{stream: MediaStream | null, errors: MediaError[]}>}
   */
  async openLocalMedia() {
    const wanted = this.host.wanted();
    if (!MEDIA_KINDS.some((kind) => wanted[kind])) return { stream: null, errors: [] };
    const got = await this.host.acquireMedia(this);
    return this.closed ? { stream: null, errors: [] } : got;
  }

  /** The tracks this link sends. @returns {MediaStreamTrack[]} */
  sentTracks() {
    return this.pc.getSenders().flatMap((s) => (s.track ? [s.track] : []));
  }

  async sampleStats() {
    if (this.closed || this.pc.connectionState !== "connected") return;
    const stats = await summarizeStats(this.pc, this.stats);
    if (this.closed) return;
    this.stats = stats;
    this.statsHistory.push(stats);
    const keep = this.host.settings().stats_history;
    if (this.statsHistory.length > keep) this.statsHistory.splice(0, this.statsHistory.length - keep);
    this.host.tell("stats", { peer: this.peer, stats });
    this.host.emit("stats");
  }

  /** @param {RTCDataChannel} channel */
  attachChannel(channel) {
    // The first channel carries what we send; every channel's messages are received (any label).
    if (!this.channel) this.channel = channel;
    channel.binaryType = "arraybuffer";
    // A large message goes on to Python in parts while it arrives, rather than after: the kernel hop then
    // overlaps the data channel's, and the page never holds more than a part of it.
    /** @type {Streamed | null} */
    let streamed = null;
    const receive = receiver(
      () => this.framed,
      (kind, payload) => {
        const passed = streamed;
        streamed = null;
        this.host.received(this.peer, kind, payload, passed);
      },
      (done, total, frames) => {
        this.host.partial(this.peer, "in", done, total);
        if (frames.held < this.host.settings().part_size) return;
        const part = frames.take();
        const first = !streamed;
        streamed ??= { bytes: 0, head: part.slice(0, 2000) };
        streamed.bytes += part.length;
        this.host.streamed(this.peer, frames.kindName, part, first);
      },
      () => this.host.settings().max_receive_size,
      (problem) => {
        streamed = null;
        this.host.tell("dropped", { peer: this.peer, problem }); // Python logs it, and the widget's log shows it
      },
    );
    channel.onopen = () => {
      if (this.closed) return;
      const state = /** @type {const} */ ("open");
      const fields = { peer: this.peer, state, label: channel.label, framed: this.framed };
      this.host.tell("channel", fields);
      this.host.event("datachannel-open", { type: "channel", ...fields });
      this.host.emit("rtc");
    };
    this.receivers.push(receive);
    channel.onclose = () => {
      // After close() (which said what it cut off) events are no news.
      if (this.closed) return;
      // A message under way when the channel closes never ends: say so.
      const cut = receive.unfinished();
      if (cut) this.host.tell("dropped", { peer: this.peer, problem: `${cut}: the data channel closed` });
      if (channel !== this.channel) return;
      const fields = { peer: this.peer, state: /** @type {const} */ ("closed"), label: channel.label };
      this.host.tell("channel", fields);
      this.host.event("datachannel-closed", { type: "channel", ...fields });
      this.host.emit("rtc");
    };
    channel.onmessage = (e) => {
      try {
        receive(e.data);
      } catch (err) {
        // A malformed or too large message: dropped here and in Python (with its parts), and the call goes on.
        streamed = null;
        const problem = err instanceof Error ? err.message : String(err);
        this.host.tell("dropped", { peer: this.peer, problem }); // Python logs it, and the widget's log shows it
      }
    };
  }

  /**
   * Send one message of `size` bytes on the data channel, after the sends before it; its payload comes in
   * `parts` (one part, or a PartReader of a message Python sends in parts).
   * @param {Kind} kind @param {number} size @param {Iterable<Uint8Array> | AsyncIterable<Uint8Array>} parts
   * @returns {Promise<void>}
   */
  send(kind, size, parts) {
    const { frame_size, high_water } = this.host.settings();
    const limits = { frameSize: frame_size, highWater: high_water, maxMessageSize: this.pc.sctp?.maxMessageSize };
    const framing = { framed: this.framed, announceLength: this.announceLength };
    const onProgress = size >= PROGRESS_MIN ? (/** @type {number} */ done) => this.host.partial(this.peer, "out", done, size) : undefined;
    const sent = this.sends.then(() => sendParts(this.channel, framing, kind, size, parts, limits, onProgress));
    // A send that fails (or never starts) lets go of its parts, so that other links sending them go on.
    const stop = /** @type {{return?: () => unknown}} */ (parts).return;
    this.sends = sent.catch(() => {
      stop?.call(parts);
    }); // one failed send does not stop the next
    return sent;
  }

  /** @param {Signal} signal */
  signal(signal) {
    this.host.tell("signal", { peer: this.peer, signal });
  }

  /**
   * Tell Python about a peer-connection event, and log it here at once: Python logs it too but does not
   * echo it back, which would double the messages while a call is being set up.
   * @param {string} name @param {unknown} value
   */
  report(name, value) {
    this.host.tell("rtc", { peer: this.peer, name, value });
    this.host.event(name, value);
  }

  /** Close the peer connection and stop every track it used, so that the camera light goes off. Idempotent. */
  close() {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.statsTimer);
    // A message still arriving is cut off by the hang-up: said now, while the phone still talks to Python.
    for (const receive of this.receivers) {
      const cut = receive.unfinished();
      if (cut) this.host.tell("dropped", { peer: this.peer, problem: `${cut}: the call ended` });
    }
    this.channel = null;
    this.pending = [];
    // The tracks are the phone's: the last link to let go stops them.
    this.host.releaseMedia(this);
    this.localStream = null;
    this.remoteStream = null;
    this.pc.close();
    this.rtc = { ...this.rtc, connectionState: "closed" };
  }
}

/** @param {string | undefined} json @returns {{sdp?: string} | null} */
function parseDescription(json) {
  try {
    return JSON.parse(json ?? "");
  } catch {
    return null;
  }
}

/**
 * The session ID of an SDP (its o= line's second field): the same for every offer of one peer connection,
 * new for a new one. Null when there is none.
 * @param {string | undefined} sdp
 */
export function sessionOf(sdp) {
  const match = /^o=\S+ (\S+) /m.exec(sdp ?? "");
  return match ? match[1] : null;
}
