// A compact summary of RTCPeerConnection.getStats(), using the standard report types.

/**
 * @typedef {{type: string, protocol: string, address: string, port: number}} CandidateSummary
 * @typedef {{
 *   rtt_ms: number | null, bytes_sent: number, bytes_received: number,
 *   send_kbps: number | null, receive_kbps: number | null,
 *   local_candidate: CandidateSummary | null, remote_candidate: CandidateSummary | null,
 *   timestamp: number,
 * }} StatsSummary
 */

/**
 * Summarize the selected candidate pair; bitrates come from the previous summary, if any.
 * @param {RTCPeerConnection} pc
 * @param {StatsSummary | null} previous
 * @returns {Promise<StatsSummary>}
 */
export async function summarizeStats(pc, previous) {
  const report = await pc.getStats();
  /** @type {Map<string, any>} */
  const byId = new Map();
  report.forEach((s) => byId.set(s.id, s));
  let pair = null;
  for (const s of byId.values()) {
    if (s.type === "transport" && s.selectedCandidatePairId) pair = byId.get(s.selectedCandidatePairId);
  }
  if (!pair) {
    // Some browsers leave selectedCandidatePairId out: take the nominated pair that succeeded.
    for (const s of byId.values()) {
      if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded") pair = s;
    }
  }
  const now = performance.now();
  const summary = {
    rtt_ms: pair?.currentRoundTripTime != null ? round(pair.currentRoundTripTime * 1000) : null,
    bytes_sent: pair?.bytesSent ?? 0,
    bytes_received: pair?.bytesReceived ?? 0,
    send_kbps: null,
    receive_kbps: null,
    local_candidate: candidate(byId.get(pair?.localCandidateId)),
    remote_candidate: candidate(byId.get(pair?.remoteCandidateId)),
    timestamp: now,
  };
  if (previous) {
    const seconds = (now - previous.timestamp) / 1000;
    if (seconds > 0) {
      summary.send_kbps = round(((summary.bytes_sent - previous.bytes_sent) * 8) / 1000 / seconds);
      summary.receive_kbps = round(((summary.bytes_received - previous.bytes_received) * 8) / 1000 / seconds);
    }
  }
  return summary;
}

/** @param {any} s @returns {CandidateSummary | null} */
function candidate(s) {
  if (!s) return null;
  return { type: s.candidateType, protocol: s.protocol, address: s.address ?? s.ip, port: s.port };
}

/** @param {number} x */
function round(x) {
  return Math.round(x * 10) / 10;
}
