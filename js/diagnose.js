// The connectivity check: is the page a secure context, which cameras and microphones are there, and what each
// configured STUN/TURN server gives: a throwaway peer connection per server gathers candidates through it,
// and `icecandidateerror` tells refused TURN credentials. Python asks (`diagnose`) and gets the report
// (`diagnosis`); the widget's button asks Python, so both paths show the same report in the panel.

import { h, panel } from "./dom.js";

/**
 * @typedef {{errorCode: number, errorText: string, url: string}} CandidateError
 * @typedef {{url: string, candidate_types: string[], errors: CandidateError[], ok: boolean, advice: string}} ServerReport
 * @typedef {{available: boolean, devices: number, advice: string}} MediaReport
 * @typedef {{
 *   ok: boolean, secure_context: boolean, secure_context_advice: string,
 *   media: {audio: MediaReport, video: MediaReport}, servers: ServerReport[], problems: string[],
 * }} Report
 * @typedef {{type: "diagnose", id: string, ice_servers: RTCIceServer[]}} DiagnoseMessage
 * @typedef {{candidateTypes: string[], errors: CandidateError[]}} Gathered
 */

/** The event a phone dispatches when a report is ready (the panel shows it). */
export const DIAGNOSIS_EVENT = "nbcall-diagnosis";
const GATHER_MS = 5000;

/**
 * Each URL of each server on its own, with that server's credentials.
 * @param {RTCIceServer[]} servers
 * @returns {RTCIceServer[]}
 */
export function splitServers(servers) {
  return servers.flatMap((s) => (Array.isArray(s.urls) ? s.urls : [s.urls]).map((url) => ({ ...s, urls: url })));
}

/**
 * Judge what one server gave: TURN should give a relay candidate, STUN a server-reflexive one.
 * @param {string} url @param {Gathered} gathered
 * @returns {ServerReport}
 */
export function judgeServer(url, { candidateTypes, errors }) {
  const turn = /^turns?:/.test(url);
  const wanted = turn ? "relay" : "srflx";
  const types = [...new Set(candidateTypes)].sort();
  const ok = types.includes(wanted);
  const codes = errors.map((e) => e.errorCode);
  let advice = "";
  if (ok) advice = "";
  else if (codes.includes(401) || codes.includes(441)) {
    advice = "the TURN server refused the username and credential (401): check them in ice_servers";
  } else if (codes.includes(403)) {
    advice = "the TURN server refused to relay (403): it may forbid the peer's address (coturn: --allow-loopback-peers)";
  } else if (turn) {
    advice =
      "no relay candidate: the server did not answer (wrong host or port, UDP blocked by a firewall: try " +
      "turn:HOST:443?transport=tcp or turns:), or it is not a TURN server";
  } else {
    advice =
      "no server-reflexive candidate: the STUN server did not answer (wrong host or port, UDP blocked), or this " +
      "machine has a public address and srflx equals host (then the browser drops it, and all is well)";
  }
  return { url, candidate_types: types, errors, ok, advice };
}

/**
 * Gather candidates through one server with a throwaway peer connection, until gathering completes or timeout.
 * @param {RTCIceServer} server @param {number} timeoutMs
 * @returns {Promise<Gathered>}
 */
export async function gatherThrough(server, timeoutMs = GATHER_MS) {
  const pc = new RTCPeerConnection({ iceServers: [server] });
  /** @type {string[]} */
  const candidateTypes = [];
  /** @type {CandidateError[]} */
  const errors = [];
  try {
    const done = new Promise((resolve) => {
      pc.addEventListener("icecandidate", (e) => {
        if (e.candidate?.type) candidateTypes.push(e.candidate.type);
        if (!e.candidate) resolve(undefined);
      });
      setTimeout(resolve, timeoutMs);
    });
    pc.addEventListener("icecandidateerror", ({ errorCode, errorText, url }) => errors.push({ errorCode, errorText, url }));
    pc.createDataChannel("nbcall-diagnose"); // something to negotiate, so that ICE gathers
    await pc.setLocalDescription(await pc.createOffer());
    await done;
  } finally {
    pc.close();
  }
  return { candidateTypes, errors };
}

/**
 * Cameras and microphones the page can see.
 * @param {{enumerateDevices?: () => Promise<MediaDeviceInfo[]>} | undefined} devices
 * @param {boolean} secure
 * @returns {Promise<{audio: MediaReport, video: MediaReport}>}
 */
export async function mediaDevices(devices, secure) {
  const why = secure
    ? "the browser gives no access to media devices here"
    : "the page is not a secure context, so the browser hides cameras and microphones";
  if (!devices?.enumerateDevices) {
    const none = { available: false, devices: 0, advice: why };
    return { audio: none, video: { ...none } };
  }
  const found = await devices.enumerateDevices();
  /** @param {MediaDeviceKind} kind @param {string} name */
  const report = (kind, name) => {
    const count = found.filter((d) => d.kind === kind).length;
    return {
      available: count > 0,
      devices: count,
      advice: count
        ? ""
        : `no ${name} found: plug one in, or close the application that holds it; calls still work without it`,
    };
  };
  return { audio: report("audioinput", "microphone"), video: report("videoinput", "camera") };
}

/**
 * The whole check.
 * @param {RTCIceServer[]} iceServers
 * @param {{secure?: boolean, devices?: {enumerateDevices?: () => Promise<MediaDeviceInfo[]>},
 *   gather?: (server: RTCIceServer) => Promise<Gathered>}} [env]
 * @returns {Promise<Report>}
 */
export async function diagnose(iceServers, env = {}) {
  const secure = env.secure ?? Boolean(globalThis.isSecureContext);
  const devices = "devices" in env ? env.devices : globalThis.navigator?.mediaDevices;
  const gather = env.gather ?? ((server) => gatherThrough(server));
  const media = await mediaDevices(devices, secure);
  const servers = await Promise.all(
    splitServers(iceServers).map(async (server) => judgeServer(String(server.urls), await gather(server))),
  );
  const secureAdvice = secure
    ? ""
    : "open the notebook over https, or on localhost / 127.0.0.1: other http pages get no camera or microphone";
  const problems = [
    ...(secure ? [] : [`secure context: ${secureAdvice}`]),
    ...servers.filter((s) => !s.ok).map((s) => `${s.url}: ${s.advice}`),
  ];
  // Missing devices are worth saying but are no failure: a data-only phone needs none.
  return { ok: problems.length === 0, secure_context: secure, secure_context_advice: secureAdvice, media, servers, problems };
}

/**
 * Python asked for a check: run it, reply with the report, and show it.
 * @param {import("./phone.js").BrowserPhone} phone @param {DiagnoseMessage} message
 */
export async function runDiagnosis(phone, { id, ice_servers }) {
  const report = await diagnose(ice_servers);
  phone.link.tell("diagnosis", { id, report });
  phone.dispatchEvent(new CustomEvent(DIAGNOSIS_EVENT, { detail: report }));
}

/**
 * The "Connectivity check" panel with its button (which asks Python, so the configured servers are used).
 * @param {HTMLElement} root @param {import("./phone.js").BrowserPhone} phone
 */
export function mountDiagnosis(root, phone) {
  const abort = new AbortController();
  const button = h("button", { class: "nbcall-diagnose" }, ["Check camera, microphone and STUN/TURN servers"]);
  const result = h("div", { class: "nbcall-diagnosis" });
  const details = panel(root, "nbcall-diagnose", "Connectivity check", [button, result]);
  button.addEventListener(
    "click",
    () => {
      result.textContent = "Checking… (up to 5 s per STUN/TURN server)";
      phone.link.tell("ui", { action: "diagnose" });
    },
    { signal: abort.signal },
  );
  phone.addEventListener(
    DIAGNOSIS_EVENT,
    (e) => {
      const report = /** @type {CustomEvent<Report>} */ (e).detail;
      details.open = true;
      result.replaceChildren(renderReport(report));
    },
    { signal: abort.signal },
  );
  return () => abort.abort();
}

/**
 * The rows of the report's table: [check, result, advice].
 * @param {Report} report
 * @returns {[string, string, string][]}
 */
export function reportRows(report) {
  /** @type {[string, string, string][]} */
  const rows = [["secure context", report.secure_context ? "yes" : "no", report.secure_context_advice]];
  for (const [kind, m] of Object.entries(report.media)) {
    rows.push([kind === "audio" ? "microphone" : "camera", m.available ? `${m.devices} found` : "none", m.advice]);
  }
  for (const s of report.servers) {
    const errors = s.errors.map((e) => `${e.errorCode} ${e.errorText}`.trim()).join("; ");
    rows.push([s.url, `${s.candidate_types.join(", ") || "no candidates"}${errors ? ` (errors: ${errors})` : ""}`, s.advice]);
  }
  if (!report.servers.length) rows.push(["STUN/TURN servers", "none configured", "host candidates only"]);
  return rows;
}

/** @param {Report} report */
function renderReport(report) {
  const table = document.createElement("table");
  table.className = `nbcall-diagnosis-table ${report.ok ? "nbcall-ok" : "nbcall-problems"}`;
  const caption = document.createElement("caption");
  caption.textContent = report.ok ? "No problem found" : `${report.problems.length} problem(s) found`;
  table.append(caption);
  for (const [check, found, advice] of reportRows(report)) {
    const row = document.createElement("tr");
    for (const text of [check, found, advice]) {
      const cell = document.createElement("td");
      cell.textContent = text;
      row.append(cell);
    }
    if (advice) row.className = "nbcall-diagnosis-advice";
    table.append(row);
  }
  return table;
}
