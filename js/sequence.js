// The negotiation as a picture: the signaling log drawn live as a sequence diagram. Lanes for this browser, its
// kernel, the signaling server and the peer's side; one arrow per message, labelled with its type; the peer
// connection's state changes marked on the browser's lane. Click an arrow for the message; save it as SVG.

import { h, panel } from "./dom.js";
import { describe, eventValue } from "./format.js";

/**
 * @typedef {import("./protocol.js").LogEntry} LogEntry
 * @typedef {{kind: "arrow", from: number, to: number, y: number, label: string, index: number, dir: string}
 *   | {kind: "mark", lane: number, y: number, label: string, index: number}} Item
 * @typedef {{lanes: {x: number, title: string}[], items: Item[], width: number, height: number}} Layout
 */

/** Signaling messages the browser writes or reads itself (the kernel only relays them). */
const BROWSER_SIGNALS = new Set(["call", "answer", "ice"]);
/** How many of the latest log entries the diagram shows. */
export const MAX_ROWS = 150;
const LANE_GAP = 150;
const MARGIN = 56;
const TOP = 40;
const ROW = 22;

/**
 * The lanes an entry's arrow joins: [from, to], or null for an event (a mark on the browser's lane).
 * Lanes: 0 this browser, 1 its kernel, 2 the signaling server, 3 the peer's side.
 * @param {LogEntry} entry
 * @returns {[number, number] | null}
 */
export function lanesOf(entry) {
  const detail = /** @type {{to?: unknown, from?: unknown} | null} */ (
    entry.detail && typeof entry.detail === "object" ? entry.detail : null
  );
  const browser = BROWSER_SIGNALS.has(entry.type);
  if (entry.dir === "out") return [browser ? 0 : 1, detail?.to ? 3 : 2];
  if (entry.dir === "in") return [detail?.from ? 3 : 2, browser ? 0 : 1];
  return null;
}

/**
 * Where everything goes, from the log's latest MAX_ROWS entries.
 * @param {LogEntry[]} log @param {string} user this phone's ID @param {string} peer the peer's ID
 * @returns {Layout}
 */
export function layout(log, user, peer) {
  const titles = [`${user || "this"} browser`, `${user || "this"} kernel`, "signaling server", `${peer || "peer"}'s side`];
  const lanes = titles.map((title, i) => ({ x: MARGIN + i * LANE_GAP, title }));
  const first = Math.max(0, log.length - MAX_ROWS);
  /** @type {Item[]} */
  const items = log.slice(first).map((entry, i) => {
    const y = TOP + 16 + i * ROW;
    const index = first + i;
    const lanesFor = lanesOf(entry);
    if (!lanesFor) {
      const value = eventValue(entry.detail);
      return { kind: "mark", lane: 0, y, label: value ? `${entry.type}: ${value}` : entry.type, index };
    }
    return { kind: "arrow", from: lanesFor[0], to: lanesFor[1], y, label: entry.type, index, dir: entry.dir };
  });
  return { lanes, items, width: MARGIN * 2 + LANE_GAP * 3, height: TOP + 30 + items.length * ROW };
}

const NS = "http://www.w3.org/2000/svg";
const COLORS = { out: "#2f9e44", in: "#1971c2", mark: "#862e9c" };

/**
 * @param {string} tag @param {Record<string, string | number>} attrs @param {string} [text]
 * @returns {SVGElement}
 */
function svgEl(tag, attrs, text) {
  const node = /** @type {SVGElement} */ (document.createElementNS(NS, tag));
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

/**
 * Draw a layout as an SVG that stands alone (inline styles: a saved file looks the same).
 * @param {Layout} plan
 * @returns {SVGSVGElement}
 */
export function draw(plan) {
  const svg = /** @type {SVGSVGElement} */ (
    svgEl("svg", { xmlns: NS, width: plan.width, height: plan.height, viewBox: `0 0 ${plan.width} ${plan.height}` })
  );
  svg.setAttribute("class", "nbcall-sequence-svg");
  svg.setAttribute("font-family", "system-ui, sans-serif");
  svg.setAttribute("font-size", "11");
  const defs = svgEl("defs", {});
  for (const [name, color] of Object.entries(COLORS)) {
    const marker = svgEl("marker", {
      id: `nbcall-arrow-${name}`, viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7, markerHeight: 7,
      orient: "auto-start-reverse",
    });
    marker.append(svgEl("path", { d: "M 0 0 L 10 5 L 0 10 z", fill: color }));
    defs.append(marker);
  }
  svg.append(svgEl("rect", { x: 0, y: 0, width: plan.width, height: plan.height, fill: "white" }), defs);
  for (const lane of plan.lanes) {
    svg.append(
      svgEl("text", { x: lane.x, y: 18, "text-anchor": "middle", "font-weight": "600" }, lane.title),
      svgEl("line", { x1: lane.x, y1: TOP - 10, x2: lane.x, y2: plan.height - 6, stroke: "#adb5bd", "stroke-dasharray": "4 3" }),
    );
  }
  for (const item of plan.items) {
    const group = svgEl("g", { class: `nbcall-seq-item nbcall-seq-${item.kind}`, "data-index": item.index, cursor: "pointer" });
    group.dataset.label = item.label;
    if (item.kind === "mark") {
      const x = plan.lanes[item.lane].x;
      group.append(
        svgEl("circle", { cx: x, cy: item.y, r: 3.5, fill: COLORS.mark }),
        // To the right of the lane: each row holds one item, so the label crosses no arrow.
        svgEl("text", { x: x + 8, y: item.y + 4, "text-anchor": "start", fill: COLORS.mark }, item.label),
      );
    } else {
      const x1 = plan.lanes[item.from].x;
      const x2 = plan.lanes[item.to].x;
      const color = item.dir === "out" ? COLORS.out : COLORS.in;
      group.append(
        // A wide transparent line makes the thin arrow easy to click.
        svgEl("line", { x1, y1: item.y, x2, y2: item.y, stroke: "transparent", "stroke-width": 12 }),
        svgEl("line", {
          x1, y1: item.y, x2, y2: item.y, stroke: color, "stroke-width": 1.5, "marker-end": `url(#nbcall-arrow-${item.dir})`,
        }),
        svgEl("text", { x: (x1 + x2) / 2, y: item.y - 4, "text-anchor": "middle", fill: color }, item.label),
      );
    }
    svg.append(group);
  }
  return svg;
}

/**
 * The diagram under the phone, drawn while open and redrawn (once per frame) as the log grows; returns the
 * cleanup.
 * @param {HTMLElement} root
 * @param {import("./phone.js").BrowserPhone} phone
 * @param {() => {user: string, peer: string}} who
 */
export function mountSequence(root, phone, who) {
  const abort = new AbortController();
  const on = { signal: abort.signal };
  const save = h("button", { class: "nbcall-sequence-save" }, ["Save as SVG"]);
  const picture = h("div", { class: "nbcall-sequence" });
  const shown = h("pre", { class: "nbcall-sequence-message" }, ["Click an arrow to see its message."]);
  const details = panel(root, "nbcall-sequence", "Negotiation as a sequence diagram", [save, picture, shown]);

  let frame = 0;
  const render = () => {
    frame = 0;
    if (!details.open) return;
    const { user, peer } = who();
    picture.replaceChildren(draw(layout(phone.log, user, peer)));
    picture.scrollTop = picture.scrollHeight;
  };
  const soon = () => {
    if (!frame && details.open) frame = requestAnimationFrame(render);
  };
  details.addEventListener("toggle", render, on);
  phone.addEventListener("log", soon, on);
  phone.addEventListener("log-entry", soon, on);
  picture.addEventListener(
    "click",
    (e) => {
      const group = /** @type {Element} */ (e.target).closest?.(".nbcall-seq-item");
      if (!group) return;
      picture.querySelector(".nbcall-seq-selected")?.classList.remove("nbcall-seq-selected");
      group.classList.add("nbcall-seq-selected");
      const entry = phone.log[Number(group.getAttribute("data-index"))];
      shown.textContent = entry ? `${entry.dir} ${entry.type}\n${describe(entry.detail)}` : "";
    },
    on,
  );
  save.addEventListener(
    "click",
    () => {
      const svg = picture.querySelector("svg");
      if (!svg) return;
      const blob = new Blob([new XMLSerializer().serializeToString(svg)], { type: "image/svg+xml" });
      const link = document.createElement("a");
      link.href = URL.createObjectURL(blob);
      link.download = `nbcall-${who().user || "phone"}-negotiation.svg`;
      link.click();
      setTimeout(() => URL.revokeObjectURL(link.href), 1000);
    },
    on,
  );
  return () => {
    cancelAnimationFrame(frame);
    abort.abort();
  };
}
