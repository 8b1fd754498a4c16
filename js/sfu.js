// A phone's connections to the SFU in an SFU room (docs/rooms.md, "SFU rooms"): one publisher connection that
// carries our data channel (and camera and microphone) to Janus, one subscriber connection that brings every
// other member's feed. Janus labels each received data channel with the sender's feed ID; `feeds` maps it to
// the member. Data follows framing.js's SFU rules: frames of at most SFU_FRAME bytes, each message's first frame
// marked, senders paced by their receivers' ACKs (as nbcall/peer/sfu.py, the Python peer's twin of this file).
//
// A member counts as connected (a `channel` "open" for it) once our publisher channel is open, something came on
// its feed, and it said it receives ours (an ACK naming us). To get there a publisher repeats a hello (ACK 0
// naming nobody) until every known feed acknowledged it; a subscriber answers the first frame of each feed, and
// each hello, with ACK 0 naming that member, and a member's first ACK naming us with one of its own.

import { ACK, AckWindow, FrameDecoder, FrameWriter, SFU_FRAME, SYNC, ackFrame, control } from "./framing.js";
import { drained } from "./channel.js";
import { MEDIA_KINDS } from "./media.js";
import { reportOf, summarizeFeeds, summarizeReports } from "./stats.js";

/**
 * @typedef {import("./framing.js").Kind} Kind
 * @typedef {import("./peer.js").PeerHost} PeerHost
 * @typedef {{mid: string, type?: string, feed?: string, member?: string}} Stream
 * @typedef {"publisher" | "subscriber"} Role
 * @typedef {import("./stats.js").StatsSummary} StatsSummary
 * @typedef {import("./stats.js").FeedSummary} FeedSummary
 */

/** Milliseconds between a publisher's hellos while a known feed has not acknowledged it. */
const HELLO_MS = 250;
/** @type {readonly Role[]} */
const ROLES = ["publisher", "subscriber"];
const STATES = /** @type {const} */ ([
  ["connectionState", "connectionstatechange"],
  ["iceConnectionState", "iceconnectionstatechange"],
]);

export class SfuLink {
  /**
   * @param {RTCConfiguration} config @param {PeerHost} host
   * @param {(sendingVideo: Set<string>) => Set<string>} shown which of the members sending video get a tile
   *   (their video is received; the others' is not)
   */
  constructor(config, host, shown) {
    this.config = config;
    this.host = host;
    this.shown = shown;
    this.closed = false;
    this.publisher = this.connection("publisher");
    /** @type {RTCPeerConnection | null} */
    this.subscriber = null;
    /** Our publisher's data channel. @type {RTCDataChannel | null} */
    this.channel = null;
    /** Feed ID -> member, from the server. @type {Record<string, string>} */
    this.feeds = {};
    /** Which member each media section of the subscriber connection carries, by mid. @type {Map<string, string>} */
    this.mids = new Map();
    /** The members whose feed carries video. @type {Set<string>} */
    this.videoMembers = new Set();
    /** The view last asked for (`sfu-view`), as JSON; null while every member's video is taken. @type {string | null} */
    this.view = null;
    /** @type {Map<string, FrameDecoder>} */
    this.decoders = new Map();
    /** Members whose feed brought something, that receive us, and that count as connected. */
    this.heard = new Set();
    this.hearsMe = new Set();
    /** @type {Set<string>} */
    this.connected = new Set();
    this.window = new AckWindow();
    /** What each member sends us, for the views: one stream per member. @type {Map<string, MediaStream>} */
    this.remoteStreams = new Map();
    /** Our camera and microphone, when we publish some. @type {MediaStream | null} */
    this.localStream = null;
    this.steps = Promise.resolve();
    this.sends = Promise.resolve();
    /** @type {(() => void) | null} */
    this.onAck = null;
    /** @type {ReturnType<typeof setInterval> | 0} */
    this.helloTimer = 0;
    /** The last statistics of each of our links to the SFU, and their last samples for the sparklines. */
    this.stats = /** @type {Record<Role, StatsSummary | null>} */ ({ publisher: null, subscriber: null });
    this.statsHistory = /** @type {Record<Role, StatsSummary[]>} */ ({ publisher: [], subscriber: [] });
    /** What came from each member through the subscriber link (summarizeFeeds). @type {Record<string, FeedSummary>} */
    this.feedStats = {};
    /** Sampling starts as we publish. @type {ReturnType<typeof setInterval> | 0} */
    this.statsTimer = 0;
  }

  /** @param {Role} role */
  connection(role) {
    const pc = new RTCPeerConnection(this.config);
    for (const [name, event] of STATES) {
      pc.addEventListener(event, () => {
        if (!this.closed) this.host.tell("sfu_rtc", { role, name, value: pc[name] });
        this.host.emit("rtc");
      });
    }
    return pc;
  }

  /** Run a signaling step after the ones before it; a failure is reported unless we closed. @param {() => Promise<void>} fn */
  step(fn) {
    this.steps = this.steps.then(fn).catch((err) => {
      if (!this.closed) this.host.fail("", err);
    });
  }

  /** Offer the SFU our data channel and the camera and microphone we would like to send. */
  async publish() {
    const pc = this.publisher;
    this.statsTimer = setInterval(() => this.sampleStats().catch(() => {}), this.host.settings().stats_interval_ms);
    const wanted = this.host.wanted();
    if (MEDIA_KINDS.some((kind) => wanted[kind])) {
      const { stream, errors } = await this.host.acquireMedia(/** @type {never} */ (this));
      if (this.closed) return;
      for (const track of stream?.getTracks() ?? []) {
        pc.addTransceiver(track, { direction: "sendonly", streams: stream ? [stream] : [] });
      }
      this.localStream = stream;
      this.host.mediaChanged(errors);
    }
    const channel = pc.createDataChannel("nbcall");
    channel.binaryType = "arraybuffer";
    channel.onopen = () => this.published();
    channel.onclose = () => this.updateConnected();
    this.channel = channel;
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc);
    if (!this.closed) this.signal("publisher", pc);
  }

  /**
   * The SFU's answer to our publisher, its (updated) subscriber offer, new feeds alone, or a candidate.
   * @param {Role} role @param {import("./protocol.js").Signal} signal
   * @param {Record<string, string> | undefined} feeds @param {Stream[] | undefined} streams
   */
  async take(role, signal, feeds, streams) {
    if (feeds && role === "subscriber") this.updateFeeds(feeds);
    if (streams) {
      this.videoMembers = new Set(streams.flatMap((s) => (s.type === "video" && s.member ? [s.member] : [])));
      for (const stream of streams) if (stream.member) this.mids.set(String(stream.mid), stream.member);
    }
    if (signal.type === "feeds") return;
    if (signal.type === "ice") {
      const pc = role === "publisher" ? this.publisher : this.subscriber;
      if (pc && signal.candidate) await pc.addIceCandidate(JSON.parse(signal.candidate));
      return;
    }
    const description = JSON.parse(signal.sdp ?? "");
    if (role === "publisher") {
      await this.publisher.setRemoteDescription(description);
      return;
    }
    let pc = this.subscriber;
    if (!pc) {
      pc = this.subscriber = this.connection("subscriber");
      // Without a data channel of our own on this connection, Janus relays nothing (and says nothing).
      pc.createDataChannel("nbcall");
      pc.ondatachannel = (e) => this.attachFeed(e.channel);
      pc.ontrack = (e) => this.addTrack(e.transceiver.mid, e.track);
    }
    await pc.setRemoteDescription(description);
    // Video only for the members whose tiles are shown (audio from every member): the rest stays at Janus.
    const shown = this.shown(this.videoMembers);
    this.askView(shown);
    for (const t of pc.getTransceivers()) {
      if (t.receiver.track.kind !== "video") continue;
      const member = t.mid === null ? undefined : this.mids.get(t.mid);
      t.direction = member !== undefined && shown.has(member) ? "recvonly" : "inactive";
    }
    await pc.setLocalDescription(await pc.createAnswer());
    await gathered(pc);
    if (!this.closed) this.signal("subscriber", pc);
  }

  /**
   * Ask the server for the video of the members shown only, once more members send video than the grid shows
   * (`sfu-view`; its next offer leaves the others' video out).
   * @param {Set<string>} shown
   */
  askView(shown) {
    const view = [...shown].filter((m) => this.videoMembers.has(m)).sort();
    const key = JSON.stringify(view);
    if (key === this.view || (this.view === null && view.length === this.videoMembers.size)) return;
    this.view = key;
    this.host.tell("sfu_view", { video: view });
  }

  /** @param {Role} role @param {RTCPeerConnection} pc */
  signal(role, pc) {
    const local = /** @type {RTCSessionDescription} */ (pc.localDescription);
    this.host.tell("sfu_signal", { role, signal: { type: local.type, sdp: JSON.stringify(local) } });
  }

  /** @param {Record<string, string>} feeds */
  updateFeeds(feeds) {
    const now = new Set(Object.values(feeds));
    const gone = Object.values(this.feeds).filter((m) => !now.has(m));
    this.feeds = { ...feeds };
    for (const member of gone) this.forget(member);
  }

  /** `member` left the room: it holds no send back, and its state starts afresh should it come back. @param {string} member */
  forget(member) {
    this.window.forget(member);
    this.onAck?.();
    this.heard.delete(member);
    this.hearsMe.delete(member);
    this.remoteStreams.delete(member);
    this.updateConnected();
  }

  /** Our publisher channel opened: announce ourselves until every known feed acknowledged us. */
  published() {
    const hello = () => {
      const unacked = Object.values(this.feeds).some((m) => !this.hearsMe.has(m));
      if (unacked || !Object.keys(this.feeds).length) this.sendControl(ackFrame(0, ""));
    };
    hello();
    this.helloTimer = setInterval(hello, HELLO_MS);
    this.updateConnected();
  }

  /** @param {RTCDataChannel} channel */
  attachFeed(channel) {
    channel.binaryType = "arraybuffer";
    const feed = channel.label;
    channel.onmessage = (e) => {
      if (this.closed || typeof e.data === "string") return;
      try {
        this.receive(feed, new Uint8Array(e.data));
      } catch (err) {
        this.host.fail(this.feeds[feed] ?? "", err);
      }
    };
  }

  /** @param {string} feed @param {Uint8Array<ArrayBuffer>} frame */
  receive(feed, frame) {
    const member = this.feeds[feed];
    if (member === undefined) return; // a feed the server did not name (yet)
    const pacing = control(frame);
    const hello = pacing?.type === ACK && pacing.sender === "";
    if (!this.heard.has(member) || hello) {
      // "I receive you", to its first frame and to each hello: Janus drops data on a link that is not ready
      // without a word, so an answer may be lost, and the member says hello until it has one.
      this.heard.add(member);
      this.sendControl(ackFrame(0, member));
    }
    if (pacing) {
      if (pacing.type === SYNC) this.sendControl(ackFrame(pacing.sequence, member));
      else if (pacing.type === ACK && pacing.sender === this.host.userId()) {
        if (!this.hearsMe.has(member)) {
          this.hearsMe.add(member);
          this.sendControl(ackFrame(0, member)); // in case it subscribed to us after our first
        }
        this.window.acked(member, pacing.sequence);
        this.onAck?.();
      }
      this.updateConnected();
      return;
    }
    this.updateConnected();
    let decoder = this.decoders.get(feed);
    if (!decoder) this.decoders.set(feed, (decoder = new FrameDecoder(Infinity, true)));
    const message = decoder.push(frame);
    if (message) this.host.received(member, message.kind, /** @type {Uint8Array<ArrayBuffer>} */ (message.payload), null);
    else if (decoder.pending) this.host.partial(member, "in", decoder.pending, decoder.expected);
  }

  updateConnected() {
    const open = !this.closed && this.channel?.readyState === "open";
    const now = new Set(open ? [...this.heard].filter((m) => this.hearsMe.has(m)) : []);
    for (const member of now) if (!this.connected.has(member)) this.tellChannel(member, "open");
    for (const member of this.connected) if (!now.has(member)) this.tellChannel(member, "closed");
    this.connected = now;
  }

  /** @param {string} member @param {"open" | "closed"} state */
  tellChannel(member, state) {
    const fields = { peer: member, state, label: "sfu", framed: true };
    this.host.tell("channel", fields);
    this.host.event(`datachannel-${state}`, { type: "channel", ...fields });
    this.host.emit("rtc");
  }

  /** @param {string | null} mid @param {MediaStreamTrack} track */
  addTrack(mid, track) {
    const member = (mid !== null && this.mids.get(mid)) || "";
    let stream = this.remoteStreams.get(member);
    if (!stream) this.remoteStreams.set(member, (stream = new MediaStream()));
    stream.addTrack(track);
    track.addEventListener("ended", () => this.host.emit("media"));
    this.host.mediaChanged();
    this.host.emit("media");
  }

  /** @param {Uint8Array} frame */
  sendControl(frame) {
    // Never queued behind a large send: acks must pass our own paced data.
    if (!this.closed && this.channel?.readyState === "open") this.channel.send(/** @type {Uint8Array<ArrayBuffer>} */ (frame));
  }

  /**
   * Send one message of `size` bytes to every member, after the sends before it, paced by the members' ACKs.
   * @param {Kind} kind @param {number} size
   * @param {Iterable<Uint8Array> | AsyncIterable<Uint8Array>} parts its payload: whole, or in parts as Python sends them
   */
  send(kind, size, parts) {
    const sent = this.sends.then(() => this.sendNow(kind, size, parts));
    this.sends = sent.catch(() => {});
    return sent;
  }

  /** @param {Kind} kind @param {number} size @param {Iterable<Uint8Array> | AsyncIterable<Uint8Array>} parts */
  async sendNow(kind, size, parts) {
    const channel = this.channel;
    const highWater = this.host.settings().high_water;
    channel && (channel.bufferedAmountLowThreshold = highWater / 2);
    const writer = new FrameWriter(kind, size, SFU_FRAME, true, true);
    let done = 0;
    for await (const part of parts) {
      for (const frame of writer.write(part)) {
        if (!channel || channel.readyState !== "open" || this.closed) throw new Error("the data channel to the SFU is not open");
        while (this.window.blocked(performance.now() / 1000)) {
          await new Promise((resolve) => {
            const timer = setTimeout(resolve, 500);
            this.onAck = () => {
              clearTimeout(timer);
              resolve(undefined);
            };
          });
          this.onAck = null;
          if (this.closed || channel.readyState !== "open") throw new Error("the data channel to the SFU closed while sending");
        }
        if (channel.bufferedAmount > highWater) await drained(channel);
        channel.send(/** @type {Uint8Array<ArrayBuffer>} */ (frame));
        const sync = this.window.sent(frame.length, this.connected, performance.now() / 1000);
        if (sync) channel.send(sync);
        done += frame.length - 1;
        if (size >= 1024 * 1024) this.host.partial("", "out", Math.min(done, size), size);
      }
    }
    writer.finish();
  }

  /** The tracks we send. @returns {MediaStreamTrack[]} */
  sentTracks() {
    return this.publisher.getSenders().flatMap((s) => (s.track ? [s.track] : []));
  }

  /**
   * Sample both links to the SFU: Python gets our own links once, under our ID, and each member's feed under
   * that member (so that a room's numbers add up), as the panel shows them.
   */
  async sampleStats() {
    const now = performance.now();
    let sampled = false;
    for (const role of ROLES) {
      const pc = role === "publisher" ? this.publisher : this.subscriber;
      if (this.closed || !pc || pc.connectionState !== "connected") continue;
      const previous = this.stats[role];
      const byId = await reportOf(pc);
      if (this.closed) return;
      const summary = summarizeReports(byId, previous, now);
      this.stats[role] = summary;
      const history = this.statsHistory[role];
      history.push(summary);
      if (history.length > this.host.settings().stats_history) history.shift();
      if (role === "subscriber") {
        const seconds = previous ? (now - previous.timestamp) / 1000 : 0;
        this.feedStats = summarizeFeeds(byId, (stat) => this.memberOf(stat), this.feedStats, seconds);
      }
      sampled = true;
    }
    if (!sampled) return;
    this.host.tell("stats", { peer: this.host.userId(), stats: { ...this.stats } });
    for (const [member, feed] of Object.entries(this.feedStats)) this.host.tell("stats", { peer: member, stats: feed });
    this.host.emit("stats");
  }

  /** The member a data-channel or inbound-rtp stat of the subscriber link comes from. @param {any} stat */
  memberOf(stat) {
    if (stat.type === "data-channel") return this.feeds[stat.label];
    let mid = stat.mid;
    if (mid == null) {
      // Chromium versions without `mid` in inbound-rtp: find the transceiver by its track.
      const t = this.subscriber?.getTransceivers().find((x) => x.receiver.track.id === stat.trackIdentifier);
      mid = t?.mid;
    }
    return mid == null ? undefined : this.mids.get(String(mid));
  }

  /**
   * One of our links to the SFU as the statistics panel shows a connection.
   * @param {Role} role
   */
  panel(role) {
    const pc = role === "publisher" ? this.publisher : this.subscriber;
    const feeds = Object.keys(this.feeds).length;
    return {
      rtc: pc ? { connectionState: pc.connectionState, iceConnectionState: pc.iceConnectionState,
        iceGatheringState: pc.iceGatheringState, signalingState: pc.signalingState } : {},
      stats: this.stats[role],
      statsHistory: this.statsHistory[role],
      channelText: role === "publisher"
        ? this.channel ? `ours to every member, ${this.channel.label} (${this.channel.readyState})` : undefined
        : `one per member's feed (${feeds}), labelled with Janus's feed ID`,
    };
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.helloTimer);
    clearInterval(this.statsTimer);
    this.onAck?.();
    this.host.releaseMedia(/** @type {never} */ (this));
    this.localStream = null;
    this.remoteStreams.clear();
    this.channel = null;
    this.publisher.close();
    this.subscriber?.close();
  }
}

/**
 * Resolves once the connection gathered every candidate: the SFU gets complete descriptions (no trickle).
 * @param {RTCPeerConnection} pc
 */
function gathered(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const check = () => {
      if (pc.iceGatheringState !== "complete") return;
      pc.removeEventListener("icegatheringstatechange", check);
      resolve(undefined);
    };
    pc.addEventListener("icegatheringstatechange", check);
    setTimeout(resolve, 5000); // gather what came in 5 s: a missing candidate is better than no offer
  });
}
