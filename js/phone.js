// The browser half of a phone: one per widget model (not per view). It holds a PeerLink per remote peer
// (one in a 1:1 call), the signaling log and the data-channel chat the views show, and acts on Python's
// messages through the handler table FROM_PYTHON. Browser events go to Python as messages (link.js), never
// as trait changes: a trait change sent while a cell awaits can wedge the model's later updates.
// In a room it holds one PeerLink per other member, a message typed or sent without `to` goes to every open
// channel, and each received message and report names its peer.
// Media: what to send comes from the `audio`/`video` traits (true or MediaTrackConstraints), whether the
// microphone and camera tracks are enabled from `mic_on`/`camera_on`; Python sets them all. One stream of
// camera and microphone serves every link (SharedMedia).

import { parts } from "./channel.js";
import { bytesText, previewBytes } from "./format.js";
import { Link } from "./link.js";
import { SharedMedia, mediaReport, openMedia, setEnabled } from "./media.js";
import { onChanges } from "./model.js";
import { Outgoing } from "./outgoing.js";
import { pageId } from "./page.js";
import { PeerLink } from "./peer.js";
import { Transfers } from "./progress.js";
import { FINGERPRINT } from "./protocol.js";
import { runDiagnosis } from "./diagnose.js";
import { rememberSdp } from "./sdp-panel.js";
import { SfuLink } from "./sfu.js";
import { chooseTiles } from "./grid.js";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * @typedef {import("./model.js").Model} Model
 * @typedef {import("./framing.js").Kind} Kind
 * @typedef {import("./protocol.js").LogEntry} LogEntry
 * @typedef {import("./protocol.js").MediaError} MediaError
 * @typedef {import("./protocol.js").ToBrowser} ToBrowser
 * @typedef {import("./protocol.js").ToBrowserType} ToBrowserType
 * A chat row: `peer` is the sender of a message in, the member a message out went to ("" for every one).
 * `room` says whether it was sent or received in a room (where rows name the member).
 * @typedef {{t: number, dir: "in" | "out", kind: Kind | "file", text: string, size: number, peer: string, room: boolean}} ChatEntry
 * @typedef {import("./peer.js").PeerEvent | "log" | "log-entry" | "chat-entry" | "progress"} PhoneEvent
 */

/**
 * The messages that drive the WebRTC: only the page that runs the phone's calls acts on them. Another tab showing
 * the same phone (Python sends every message to every page) leaves them, so that no second client joins a call.
 * @type {ReadonlySet<string>}
 */
const ENGINE_ONLY = new Set(["start_call", "remote", "accept", "close", "send", "diagnose", "relayed"]);

/**
 * What the phone does with each message from Python. Its keys are the protocol's `to_browser` types (a node
 * test compares them with nbcall/widget/widget_protocol.json).
 * @type {{[K in ToBrowserType]: (phone: BrowserPhone, message: ToBrowser[K], buffers: DataView[]) => void}}
 */
export const FROM_PYTHON = {
  start_call(phone, { peer, ice_servers, ice_transport_policy }) {
    const link = phone.open(peer, { iceServers: ice_servers, iceTransportPolicy: ice_transport_policy ?? "all" });
    link.step(() => link.offer());
  },
  remote(phone, { peer, signal, ice_servers, ice_transport_policy }) {
    if (signal.type === "call") {
      // An offer on a link that is up renegotiates it (perfect negotiation); any other offer starts a new one.
      const existing = phone.peers.get(peer);
      const config = { iceServers: ice_servers ?? [], iceTransportPolicy: ice_transport_policy ?? "all" };
      const link = existing?.continues(signal) ? existing : phone.open(peer, config);
      link.step(() => link.takeOffer(signal));
      return;
    }
    // An answer or candidate for a call that ended meanwhile has nothing left to act on.
    const link = phone.peers.get(peer);
    if (signal.type === "answer") link?.step(() => link.takeAnswer(signal));
    else if (signal.type === "ice") link?.step(() => link.takeCandidate(signal));
    else console.warn(`nbcall: ignored a signal of unknown type ${JSON.stringify(signal.type)} from ${peer}`);
  },
  accept(phone, { peer }) {
    const link = phone.peers.get(peer);
    if (link) link.step(() => link.answer());
    else phone.fail(peer, new Error(`no offer from ${peer} to answer (no connection)`));
  },
  close(phone, { peer }) {
    phone.close(peer);
    phone.sfu?.forget(peer);
  },
  sfu_publish(phone, { ice_servers, ice_transport_policy }) {
    phone.closeSfu();
    const config = { iceServers: ice_servers, iceTransportPolicy: ice_transport_policy ?? "all" };
    const shown = (/** @type {Set<string>} */ video) => new Set(phone.tiles((m) => video.has(m)).shown);
    const sfu = (phone.sfu = new SfuLink(config, phone.host, shown));
    sfu.step(() => sfu.publish());
    phone.emit("rtc");
  },
  sfu_remote(phone, { role, signal, feeds, streams }) {
    const sfu = phone.sfu;
    sfu?.step(() => sfu.take(/** @type {import("./sfu.js").Role} */ (role), signal, feeds, streams));
  },
  sfu_close(phone) {
    phone.closeSfu();
  },
  send(phone, { id, kind, to, size }, buffers) {
    const first = bytesOf(buffers[0]);
    if (size === undefined) {
      phone.send(id, kind, first, to); // the whole payload, from a Python half that does not send in parts
      return;
    }
    // The first part of `size` bytes; send_part brings the rest, and `sent` tells Python what the links took.
    const message = new Outgoing(size, (done) => phone.link.tell("sent", { id, done }));
    message.push(first);
    if (!message.complete) phone.outgoing.set(id, message);
    phone.send(id, kind, message, to);
  },
  send_part(phone, { id }, buffers) {
    const message = phone.outgoing.get(id);
    if (!message) return; // a send that failed, or ended with its call
    message.push(bytesOf(buffers[0]));
    if (message.complete) phone.outgoing.delete(id);
  },
  relayed(phone, { dir, peer, kind, size }, buffers) {
    // A message that went through the signaling server (an SFU room's directed send): its row, as for one
    // that came or went on a data channel; a file's verdict shows as that file's row.
    const head = bytesOf(buffers[0]);
    phone.addChat(dir, kind, head, size, peer, phone.transfers.message(dir, peer, kind, size, head));
  },
  log(phone, { entry }) {
    phone.addLog(entry);
  },
  history(phone, { log }) {
    phone.log = log.slice(-phone.link.settings.max_log);
    phone.emit("log");
  },
  sdp(phone, message) {
    rememberSdp(phone, message);
  },
  diagnose(phone, message) {
    runDiagnosis(phone, message).catch((err) => phone.fail(undefined, err));
  },
};

export class BrowserPhone extends EventTarget {
  /** @param {Model} model */
  constructor(model) {
    super();
    this.model = model;
    /** The connection to each remote peer, by peer ID. @type {Map<string, PeerLink>} */
    this.peers = new Map();
    /** The connection the views show: the latest, kept after it closed until the next. @type {PeerLink | null} */
    this.shown = null;
    /** In an SFU room: the connections to the SFU (the members are feeds on them). @type {SfuLink | null} */
    this.sfu = null;
    /** @type {LogEntry[]} */
    this.log = [];
    /** @type {ChatEntry[]} */
    this.chat = [];
    /** Large messages and files under way: shown in the views, reported to Python. */
    this.transfers = new Transfers(
      (report) => this.emit("progress", report),
      (report) => this.link.tell("progress", report),
    );
    /** @type {Promise<void>} sends from Python and from the widget, in order */
    this.sends = Promise.resolve();
    /** Messages Python is still sending in parts, by send id. @type {Map<number | string, Outgoing>} */
    this.outgoing = new Map();
    /** The camera and microphone, one stream for every link. */
    this.media = new SharedMedia(async () => {
      const { stream, errors } = await openMedia(this.host.wanted(), globalThis.navigator?.mediaDevices);
      setEnabled(stream, this.host.enabled());
      this.emit("media");
      return { stream, errors };
    });
    const handlers = /** @type {import("./link.js").Handlers} */ (
      Object.fromEntries(
        Object.entries(FROM_PYTHON).map(([type, handle]) => [
          type,
          /** @param {never} message @param {DataView[]} buffers */
          (message, buffers) => {
            if (ENGINE_ONLY.has(type) && !this.engine) return;
            handle(this, message, buffers);
          },
        ]),
      )
    );
    this.link = new Link(model, handlers, {
      // A message Python sent that the browser did not act on shows in the widget's log.
      onProblem: (type, problem, message) => {
        const detail = { type, problem, message };
        this.addLog({ t: Date.now() / 1000, dir: "in", type: "protocol-error", size: 0, detail });
      },
    });
    /** @type {import("./peer.js").PeerHost} */
    this.host = {
      tell: (type, fields) => this.link.tell(type, fields),
      event: (type, detail) => this.addLog({ t: Date.now() / 1000, dir: "event", type, size: 0, detail }),
      emit: (what) => this.emit(what),
      settings: () => this.link.settings,
      wanted: () => ({ audio: model.get("audio"), video: model.get("video") }),
      enabled: () => ({ mic_on: Boolean(model.get("mic_on")), camera_on: Boolean(model.get("camera_on")) }),
      userId: () => String(model.get("user_id") ?? ""),
      inRoom: () => Boolean(model.get("room")),
      acquireMedia: (link) => this.media.acquire(link),
      releaseMedia: (link) => this.media.release(link),
      dropTrack: (link, track) => {
        // A kind the peer did not offer: stop it, unless another link sends it.
        const others = [...this.peers.values()].filter((l) => l !== link);
        if (!others.some((l) => l.sentTracks().includes(track))) this.media.drop(track);
      },
      mediaChanged: (errors) => this.reportMedia(errors),
      received: (peer, kind, payload, streamed) => this.receive(peer, kind, payload, streamed),
      streamed: (peer, kind, part, first) => this.link.tell("message", { peer, kind, last: false, first }, [part.buffer]),
      partial: (peer, direction, done, total) => this.transfers.partial(direction, peer, done, total),
      fail: (peer, err) => this.fail(peer, err),
    };
    this.unfollow = onChanges(model, ["mic_on", "camera_on"], () => {
      setEnabled(this.media.stream, this.host.enabled()); // every link sends these same tracks
      this.emit("media");
    });
    /** This tab's page ID: Python tells a reload of the page running the calls from another tab by it. */
    this.pageId = pageId();
    // Leaving the page (reload, closed tab): Python learns that its calls, if this page ran them, are gone.
    this.onPageHide = () => {
      this.link.tell("bye", { page: this.pageId });
      this.link.flush();
    };
    globalThis.addEventListener?.("pagehide", this.onPageHide);
    this.link.tell("hello", { page: this.pageId, protocol: FINGERPRINT });
  }

  /**
   * Whether this page runs the phone's calls (Python names it in `_engine_page`); another tab only shows the
   * phone's state. A Python half that names no page (none chose one yet, or an older version) means this one.
   */
  get engine() {
    const engine = this.model.get("_engine_page");
    return !engine || engine === this.pageId;
  }

  /** Our camera and microphone (shared by every link), and what the peer sends in the connection shown. */
  get localStream() {
    return this.media.stream;
  }

  get remoteStream() {
    return this.shown?.remoteStream ?? null;
  }

  /**
   * A new connection to `peer` (replacing any we had with it).
   * @param {string} peer @param {RTCConfiguration} config the STUN/TURN servers and the ICE transport policy
   */
  open(peer, config) {
    this.close(peer);
    const link = new PeerLink(peer, config, this.host);
    this.peers.set(peer, link);
    this.shown = link;
    this.emit("rtc");
    return link;
  }

  /** Close the connection to `peer`, if there is one. @param {string} peer */
  close(peer) {
    const link = this.peers.get(peer);
    if (!link) return;
    this.peers.delete(peer);
    const hadMedia = Boolean(link.localStream || link.remoteStream);
    link.close();
    this.emit("rtc");
    if (hadMedia) {
      this.reportMedia();
      this.emit("media");
    }
  }

  /**
   * Which remote members get a tile in the room's grid (see grid.js), given who sends video.
   * @param {(member: string) => boolean} sendsVideo
   */
  tiles(sendsVideo) {
    const members = this.model.get("members") ?? [];
    return chooseTiles(members, String(this.model.get("user_id") ?? ""), sendsVideo, this.link.settings.max_tiles);
  }

  /** Close the connections to the SFU, if there are some. */
  closeSfu() {
    const sfu = this.sfu;
    if (!sfu) return;
    this.sfu = null;
    const hadMedia = Boolean(sfu.localStream || sfu.remoteStreams.size);
    sfu.close();
    this.emit("rtc");
    if (hadMedia) {
      this.reportMedia();
      this.emit("media");
    }
  }

  dispose() {
    globalThis.removeEventListener?.("pagehide", this.onPageHide);
    this.unfollow();
    this.closeSfu();
    for (const peer of [...this.peers.keys()]) this.close(peer);
    this.link.dispose();
  }

  /**
   * Tell Python which media flow each way, over every connection.
   * @param {MediaError[]} [errors]
   */
  reportMedia(errors = []) {
    const links = [...this.peers.values()];
    const sfu = this.sfu;
    const report = mediaReport(
      [...links, ...(sfu ? [sfu] : [])].map((l) => ({ getTracks: () => l.sentTracks() })),
      [...links.map((l) => l.remoteStream), ...(sfu?.remoteStreams.values() ?? [])],
      errors,
    );
    this.link.tell("media", report);
  }

  /** A WebRTC step failed. @param {string | undefined} peer @param {unknown} err */
  fail(peer, err) {
    const message = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
    this.link.tell("failure", peer === undefined ? { message } : { peer, message });
  }

  /**
   * A message from `peer` is whole: show it, and pass (the rest of) it to Python in parts.
   * @param {string} peer @param {Kind} kind @param {Uint8Array<ArrayBuffer>} payload all of it, or what
   *   followed the parts already `streamed` to Python
   * @param {import("./peer.js").Streamed | null} [streamed]
   */
  receive(peer, kind, payload, streamed = null) {
    const size = (streamed?.bytes ?? 0) + payload.length;
    const head = streamed?.head ?? payload;
    this.addChat("in", kind, head, size, peer, this.transfers.message("in", peer, kind, size, head));
    const all = parts(payload, this.link.settings.part_size);
    all.forEach((part, i) => {
      const fields = { peer, kind, last: i === all.length - 1, first: i === 0 && !streamed };
      this.link.tell("message", fields, [part]);
    });
  }

  /** Send text typed in the widget to `to`, or to every peer. @param {string} text @param {string} [to] */
  sendText(text, to) {
    this.send(null, "str", encoder.encode(text), to);
  }

  /**
   * Send one message on the data channel to `to`, or to every peer. A failure is reported as `send_failed`
   * for a send Python asked for (`id`), as a failure for one typed in the widget (`id` null).
   * @param {number | string | null} id @param {Kind} kind
   * @param {Uint8Array<ArrayBuffer> | Outgoing} payload the whole payload, or a message Python sends in parts
   * @param {string} [to]
   */
  send(id, kind, payload, to) {
    const sfu = this.sfu;
    if (sfu && to == null) {
      // An SFU room: one send reaches every member (a message to one member goes through the server).
      const parted = payload instanceof Outgoing ? payload : null;
      const total = parted ? parted.size : /** @type {Uint8Array} */ (payload).length;
      const parts = parted ? parted.split(1)[0] : [/** @type {Uint8Array} */ (payload)];
      this.sends = this.sends.then(async () => {
        try {
          await sfu.send(kind, total, parts);
          const head = parted ? parted.head : /** @type {Uint8Array} */ (payload);
          this.addChat("out", kind, head, total, "", this.transfers.message("out", "", kind, total, head));
        } catch (err) {
          if (id !== null) this.outgoing.delete(id);
          if (id !== null) this.link.tell("send_failed", { id, message: err instanceof Error ? err.message : String(err) });
          else this.fail(undefined, err);
        }
      });
      return;
    }
    const done = this.sends.then(async () => {
      // To everyone: every link whose channel is open now (a member still connecting misses it, as it would
      // have missed it a moment earlier). To one: that link, open or not, so that a closed one says why.
      const links = to == null ? [...this.peers.values()].filter((l) => l.channel?.readyState === "open") : [this.peers.get(to)];
      const parted = payload instanceof Outgoing ? payload : null;
      const size = parted ? parted.size : /** @type {Uint8Array} */ (payload).length;
      const readers = parted?.split(links.filter(Boolean).length) ?? [];
      const results = await Promise.allSettled(
        links.map((link) => {
          if (!link) return Promise.reject(new Error(`no connection to ${to}`));
          return link.send(kind, size, parted ? /** @type {AsyncIterable<Uint8Array>} */ (readers.shift()) : [/** @type {Uint8Array} */ (payload)]);
        }),
      );
      if (!links.length) {
        results.push({ status: "rejected", reason: new Error("the data channel is not open (no call)") });
      }
      const head = parted ? parted.head : /** @type {Uint8Array} */ (payload);
      let shown = /** @type {ReturnType<Transfers["message"]> | null} */ (null);
      results.forEach((r, i) => {
        const peer = links[i]?.peer;
        if (r.status === "fulfilled" && peer) shown = this.transfers.message("out", peer, kind, size, head);
      });
      if (shown) this.addChat("out", kind, head, size, to ?? "", shown);
      if (id !== null && results.some((r) => r.status === "rejected")) this.outgoing.delete(id);
      for (const r of results) {
        if (r.status === "fulfilled") continue;
        const message = r.reason instanceof Error ? r.reason.message : String(r.reason);
        if (id !== null) this.link.tell("send_failed", { id, message });
        else this.fail(to, r.reason);
      }
    });
    this.sends = done;
  }

  /** @param {LogEntry} entry */
  addLog(entry) {
    this.log.push(entry);
    const keep = this.link.settings.max_log;
    if (this.log.length > keep) this.log.splice(0, this.log.length - keep);
    this.emit("log-entry", entry);
  }

  /**
   * A chat row for a message, or for the file step it is (a file's chunks and end show no row of their own).
   * @param {"in" | "out"} dir @param {Kind} kind @param {Uint8Array} head the message, or at least its start
   * @param {number} size @param {string} peer @param {ReturnType<Transfers["message"]>} [shown]
   */
  addChat(dir, kind, head, size, peer, shown = "message") {
    if (shown === "hidden") return;
    let text = kind === "bytes" ? previewBytes(head, size) : decoder.decode(head.subarray(0, 2000));
    /** @type {ChatEntry["kind"]} */
    let rowKind = kind;
    if (shown !== "message") {
      rowKind = "file";
      text = shown.size !== undefined ? `${shown.file} (${bytesText(shown.size)})`
        : shown.ok ? `${shown.file}: received whole, sha256 checked` : `${shown.file}: failed: ${shown.error ?? "refused"}`;
    }
    /** @type {ChatEntry} */
    const entry = { t: Date.now(), dir, kind: rowKind, text, size, peer, room: Boolean(this.model.get("room")) };
    this.chat.push(entry);
    const keep = this.link.settings.max_chat;
    if (this.chat.length > keep) this.chat.splice(0, this.chat.length - keep);
    this.emit("chat-entry", entry);
  }

  /**
   * Tell the views; `detail` is what was added, for views that append rather than redraw.
   * @param {PhoneEvent} what @param {unknown} [detail]
   */
  emit(what, detail = undefined) {
    this.dispatchEvent(new CustomEvent(what, { detail }));
  }
}

/** @param {DataView | ArrayBuffer | undefined} buffer @returns {Uint8Array<ArrayBuffer>} */
function bytesOf(buffer) {
  if (!buffer) return new Uint8Array(0);
  if (buffer instanceof ArrayBuffer) return new Uint8Array(buffer);
  return new Uint8Array(/** @type {ArrayBuffer} */ (buffer.buffer), buffer.byteOffset, buffer.byteLength);
}
