// Step-through negotiation in the widget: a toggle, each held signaling message with what the peer will do with
// it and the states after it, and a Next button that lets the oldest one go. Python holds the messages (the
// `stepping` and `held` traits); the buttons only ask it.

import { h } from "./dom.js";
import { onChanges } from "./model.js";

/**
 * @param {import("./model.js").Model} model
 * @param {(action: string) => void} ui sends a button press to Python
 * @returns {{element: HTMLElement, cleanup: () => void}}
 */
export function renderSteps(model, ui) {
  const toggle = h("input", { type: "checkbox", class: "nbcall-step-toggle" });
  const next = h("button", { class: "nbcall-next", textContent: "Next ▶" });
  const list = h("ol", { class: "nbcall-held" });
  const note = h("span", { class: "nbcall-step-note" });
  const element = h("div", { class: "nbcall-steps" }, [
    h("label", { title: "Hold each outgoing signaling message until Next" }, [toggle, " Step through"]),
    note,
    next,
    list,
  ]);
  toggle.addEventListener("change", () => ui(toggle.checked ? "step_on" : "step_off"));
  next.addEventListener("click", () => ui("next"));

  function render() {
    const stepping = Boolean(model.get("stepping"));
    const held = model.get("held") ?? [];
    toggle.checked = stepping;
    element.dataset.stepping = String(stepping);
    next.disabled = !held.length;
    next.hidden = list.hidden = !stepping && !held.length;
    note.textContent = stepping ? (held.length ? `${held.length} waiting` : "nothing waiting") : "";
    list.replaceChildren(...held.map((m, i) => heldRow(m, i === 0)));
  }
  const unfollow = onChanges(model, ["stepping", "held"], render);
  render();
  return { element, cleanup: unfollow };
}

/** @param {import("./model.js").HeldMessage} m @param {boolean} first */
function heldRow(m, first) {
  return h("li", { class: `nbcall-held-row${first ? " nbcall-held-next" : ""}`, dataset: { type: m.type } }, [
    h("div", { class: "nbcall-held-what" }, [h("b", { textContent: m.type }), ` to ${m.to}`]),
    h("div", { textContent: `${m.to} will: ${m.peer_will}` }),
    h("div", { class: "nbcall-held-after", textContent: `after it: us, ${m.after_us}; ${m.to}, ${m.after_peer}` }),
  ]);
}
