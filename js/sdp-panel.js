// The SDP panel: this phone's description and the peer's side by side, every line with its meaning (explained
// by Python, nbcall/teach/sdp.py: one parser for both halves), and what the answer chose from the offer.
// Python sends the explanations in `sdp` messages; rememberSdp() keeps the latest per peer on the phone.

import { h, panel } from "./dom.js";

/**
 * @typedef {{n: number, text: string, section: string, meaning: string, dropped?: boolean}} ExplainedLine
 * @typedef {{type: string | null, lines: ExplainedLine[], sections: {title: string}[]}} Explained
 * @typedef {{mid: string, kind: string, offered: string[], accepted: string[], direction: string, dtls: string,
 *   note: string}} Choice
 * @typedef {{type: "sdp", peer: string, local: Explained | null, remote: Explained | null, choices: Choice[]}}
 *   SdpMessage
 * @typedef {{section: string} | {line: ExplainedLine}} Row
 */

/** The event a phone dispatches when an explanation arrives. */
export const SDP_EVENT = "nbcall-sdp";

/** The latest explanation per phone, of its latest negotiation. @type {WeakMap<EventTarget, SdpMessage>} */
const latest = new WeakMap();

/**
 * Keep `message` as the phone's latest negotiation and tell its views.
 * @param {EventTarget} phone @param {SdpMessage} message
 */
export function rememberSdp(phone, message) {
  latest.set(phone, message);
  phone.dispatchEvent(new CustomEvent(SDP_EVENT, { detail: message }));
}

/**
 * One column's rows: a heading row where a section starts, then its lines.
 * @param {Explained | null} explained
 * @returns {Row[]}
 */
export function columnRows(explained) {
  /** @type {Row[]} */
  const rows = [];
  let section = null;
  for (const line of explained?.lines ?? []) {
    if (line.section !== section) {
      section = line.section;
      rows.push({ section });
    }
    rows.push({ line });
  }
  return rows;
}

/**
 * A column's heading: "offer (this phone)", "answer from B".
 * @param {"local" | "remote"} side @param {Explained | null} explained @param {string} peer
 */
export function columnTitle(side, explained, peer) {
  const kind = explained?.type ?? "description";
  if (!explained) return side === "local" ? "this phone: nothing sent yet" : `${peer}: nothing received yet`;
  return side === "local" ? `${kind} from this phone` : `${kind} from ${peer}`;
}

/**
 * One sentence per section of what the answer chose.
 * @param {Choice} c
 */
export function choiceText(c) {
  return `${c.kind} (mid ${c.mid}): ${c.note}; ${c.direction}; ${c.dtls}`;
}

/**
 * Build the panel at the end of `root`; returns the cleanup. Python explains the descriptions when the panel
 * asks (`ask`): when it is opened, and when an offer or answer is logged while it is open. Nothing is parsed
 * or laid out while it is closed, so no call's setup waits for it.
 * @param {HTMLElement} root @param {EventTarget} phone @param {() => void} ask
 */
export function mountSdpPanel(root, phone, ask) {
  const abort = new AbortController();
  const body = h("div");
  const details = panel(root, "nbcall-sdp", "SDP explained", [body]);

  const render = () => {
    const message = latest.get(phone);
    if (!details.open) return;
    if (!message) {
      body.replaceChildren(h("div", { class: "nbcall-sdp-empty" }, ["The offer and answer appear here during a call."]));
      return;
    }
    const choices = h("ul", { class: "nbcall-sdp-choices" });
    for (const c of message.choices) choices.append(h("li", {}, [choiceText(c)]));
    if (!message.choices.length) choices.append(h("li", {}, ["(no answer yet)"]));
    const columns = h("div", { class: "nbcall-sdp-columns" });
    for (const side of /** @type {const} */ (["local", "remote"])) {
      const explained = message[side];
      const column = h("div", { class: "nbcall-sdp-column" });
      column.dataset.side = side;
      column.append(h("div", { class: "nbcall-sdp-title" }, [columnTitle(side, explained, message.peer)]));
      const list = h("div", { class: "nbcall-sdp-lines" });
      for (const row of columnRows(explained)) {
        if ("section" in row) {
          list.append(h("div", { class: "nbcall-sdp-section" }, [row.section]));
          continue;
        }
        const line = h("div", { class: `nbcall-sdp-line${row.line.dropped ? " nbcall-sdp-dropped" : ""}` });
        line.dataset.n = String(row.line.n);
        line.append(h("code", {}, [row.line.text]), h("span", { class: "nbcall-sdp-meaning" }, [row.line.meaning]));
        if (row.line.dropped) line.title = "the answer left this codec out";
        list.append(line);
      }
      column.append(list);
      columns.append(column);
    }
    body.replaceChildren(h("div", { class: "nbcall-sdp-heading" }, ["What the answer chose"]), choices, columns);
  };
  details.addEventListener(
    "toggle",
    () => {
      root.classList.toggle("nbcall-wide", details.open); // both descriptions side by side need the width
      render();
      if (details.open) ask();
    },
    { signal: abort.signal },
  );
  phone.addEventListener(
    "log-entry",
    (e) => {
      const type = /** @type {CustomEvent<{type: string}>} */ (e).detail?.type;
      if (details.open && (type === "call" || type === "answer")) ask();
    },
    { signal: abort.signal },
  );
  phone.addEventListener(SDP_EVENT, render, { signal: abort.signal });
  return () => abort.abort();
}
