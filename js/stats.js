// A compact summary of RTCPeerConnection.getStats(), using the standard report types:
// transport -> its selected candidate-pair (round-trip time, bytes, candidates), inbound-rtp and outbound-rtp
// (one per received or sent track). Bitrates and rates are deltas against the previous summary. Field names are
// the W3C webrtc-stats ones in snake_case: nack_count and pli_count are NACKs and PLIs sent (inbound-rtp) or
// received (outbound-rtp), quality_limitation_reason is why the encoder sends less than it was asked (outbound-rtp),
// available_outgoing_kbps the congestion controller's estimate of the sending bandwidth (candidate-pair).

/**
 * @typedef {{type: string, protocol: string, address: string, port: number}} CandidateSummary
 * @typedef {{
 *   bytes: number, packets: number, kbps: number | null,
 *   packets_lost?: number, jitter_ms?: number | null, audio_level?: number | null, total_audio_energy?: number,
 *   frames?: number, fps?: number | null, width?: number | null, height?: number | null,
 *   nack_count?: number, pli_count?: number, quality_limitation_reason?: string | null,
 * }} RtpSummary
 * @typedef {{
 *   rtt_ms: number | null, bytes_sent: number, bytes_received: number,
 *   send_kbps: number | null, receive_kbps: number | null, available_outgoing_kbps: number | null,
 *   local_candidate: CandidateSummary | null, remote_candidate: CandidateSummary | null,
 *   pair: string | null,
 *   audio_in: RtpSummary | null, audio_out: RtpSummary | null,
 *   video_in: RtpSummary | null, video_out: RtpSummary | null,
 *   timestamp: number,
 * }} StatsSummary
 * What came from one member through the SFU (see summarizeFeeds): `via` says so.
 * @typedef {{
 *   via: "sfu", bytes_received: number, messages_received: number,
 *   audio_in: RtpSummary | null, video_in: RtpSummary | null,
 * }} FeedSummary
 * This phone's own two links to the SFU, once (Python's `stats[user_id]` in an SFU room).
 * @typedef {{publisher: StatsSummary | null, subscriber: StatsSummary | null}} SfuSummary
 */

/**
 * Summarize the connection; bitrates come from the previous summary, if any.
 * @param {RTCPeerConnection} pc
 * @param {StatsSummary | null} previous
 * @returns {Promise<StatsSummary>}
 */
export async function summarizeStats(pc, previous) {
  return summarizeReports(await reportOf(pc), previous, performance.now());
}

/** The connection's getStats() report, by id. @param {RTCPeerConnection} pc @returns {Promise<Map<string, any>>} */
export async function reportOf(pc) {
  const report = await pc.getStats();
  /** @type {Map<string, any>} */
  const byId = new Map();
  report.forEach((s) => byId.set(s.id, s));
  return byId;
}

/**
 * What came from each member through an SFU subscriber connection: its data (the data channel Janus labels with
 * its feed ID) and its tracks (inbound-rtp, by mid). Only these numbers are per member in an SFU room; the
 * connection's own (round-trip time, candidates, bytes in all) are the subscriber link's.
 * @param {Map<string, any>} byId the subscriber connection's report
 * @param {(stat: any) => string | undefined} memberOf the member a data-channel or inbound-rtp stat comes from
 * @param {Record<string, FeedSummary>} previous @param {number} seconds since the previous sample
 * @returns {Record<string, FeedSummary>}
 */
export function summarizeFeeds(byId, memberOf, previous, seconds) {
  /** @type {Record<string, FeedSummary>} */
  const feeds = {};
  /** @param {string} member */
  const entry = (member) =>
    (feeds[member] ??= { via: "sfu", bytes_received: 0, messages_received: 0, audio_in: null, video_in: null });
  for (const s of byId.values()) {
    if (s.type !== "data-channel" && s.type !== "inbound-rtp") continue;
    const member = memberOf(s);
    if (member === undefined) continue;
    const feed = entry(member);
    if (s.type === "data-channel") {
      feed.bytes_received += s.bytesReceived ?? 0;
      feed.messages_received += s.messagesReceived ?? 0;
    } else {
      const key = (s.kind ?? s.mediaType) === "audio" ? "audio_in" : "video_in";
      feed[key] = rtpSummary(s, previous[member]?.[key] ?? null, seconds);
    }
  }
  return feeds;
}

/**
 * The pure part of summarizeStats, testable without a browser.
 * @param {Map<string, any>} byId the stats objects by id
 * @param {StatsSummary | null} previous
 * @param {number} now milliseconds
 * @returns {StatsSummary}
 */
export function summarizeReports(byId, previous, now) {
  const pair = selectedPair(byId);
  const seconds = previous ? (now - previous.timestamp) / 1000 : 0;
  const local = candidate(byId.get(pair?.localCandidateId));
  const remote = candidate(byId.get(pair?.remoteCandidateId));
  const bytesSent = pair?.bytesSent ?? 0;
  const bytesReceived = pair?.bytesReceived ?? 0;
  /** @param {string} type @param {string} kind @param {keyof StatsSummary} key */
  const rtp = (type, kind, key) => {
    const s = [...byId.values()].find((r) => r.type === type && (r.kind ?? r.mediaType) === kind);
    return s ? rtpSummary(s, /** @type {RtpSummary | null} */ (previous?.[key] ?? null), seconds) : null;
  };
  return {
    rtt_ms: pair?.currentRoundTripTime != null ? round(pair.currentRoundTripTime * 1000) : null,
    bytes_sent: bytesSent,
    bytes_received: bytesReceived,
    send_kbps: previous ? kbps(bytesSent - previous.bytes_sent, seconds) : null,
    receive_kbps: previous ? kbps(bytesReceived - previous.bytes_received, seconds) : null,
    available_outgoing_kbps: pair?.availableOutgoingBitrate != null ? round(pair.availableOutgoingBitrate / 1000) : null,
    local_candidate: local,
    remote_candidate: remote,
    pair: local && remote ? `${local.type} ↔ ${remote.type}` : null,
    audio_in: rtp("inbound-rtp", "audio", "audio_in"),
    audio_out: rtp("outbound-rtp", "audio", "audio_out"),
    video_in: rtp("inbound-rtp", "video", "video_in"),
    video_out: rtp("outbound-rtp", "video", "video_out"),
    timestamp: now,
  };
}

/** @param {Map<string, any>} byId */
function selectedPair(byId) {
  for (const s of byId.values()) {
    if (s.type === "transport" && s.selectedCandidatePairId) return byId.get(s.selectedCandidatePairId);
  }
  // Some browsers leave selectedCandidatePairId out: take the nominated pair that succeeded.
  for (const s of byId.values()) {
    if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded") return s;
  }
  return null;
}

/**
 * One inbound-rtp or outbound-rtp report, with the fields a learner needs.
 * @param {any} s @param {RtpSummary | null} previous @param {number} seconds
 * @returns {RtpSummary}
 */
function rtpSummary(s, previous, seconds) {
  const inbound = s.type === "inbound-rtp";
  const bytes = (inbound ? s.bytesReceived : s.bytesSent) ?? 0;
  /** @type {RtpSummary} */
  const out = {
    bytes,
    packets: (inbound ? s.packetsReceived : s.packetsSent) ?? 0,
    kbps: previous && seconds > 0 ? kbps(bytes - previous.bytes, seconds) : null,
  };
  if (inbound) {
    out.packets_lost = s.packetsLost ?? 0;
    out.jitter_ms = s.jitter != null ? round(s.jitter * 1000) : null;
  }
  if ((s.kind ?? s.mediaType) === "audio") {
    if (inbound) {
      out.audio_level = s.audioLevel ?? null;
      out.total_audio_energy = s.totalAudioEnergy ?? 0;
    }
  } else {
    out.frames = (inbound ? s.framesDecoded : s.framesEncoded) ?? 0;
    out.fps = s.framesPerSecond ?? null;
    out.width = s.frameWidth ?? null;
    out.height = s.frameHeight ?? null;
    out.nack_count = s.nackCount ?? 0;
    out.pli_count = s.pliCount ?? 0;
    if (!inbound) out.quality_limitation_reason = s.qualityLimitationReason ?? null;
  }
  return out;
}

/** @param {any} s @returns {CandidateSummary | null} */
function candidate(s) {
  if (!s) return null;
  return { type: s.candidateType, protocol: s.protocol, address: s.address ?? s.ip, port: s.port };
}

/** @param {number} bytes @param {number} seconds */
function kbps(bytes, seconds) {
  return seconds > 0 ? round((bytes * 8) / 1000 / seconds) : null;
}

/** @param {number} x */
function round(x) {
  return Math.round(x * 10) / 10;
}
