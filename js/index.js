// The anywidget entry point: one BrowserPhone per model (initialize), and a view per output cell (render).
// anywidget hands initialize and render different proxies of the model, so the phone is found by a key trait.
import { BrowserPhone } from "./phone.js";
import { renderPhone } from "./view.js";
import "./phone.css";

/** @typedef {import("./model.js").Model} Model */

/** @type {Map<string, BrowserPhone>} */
const phones = new Map();

export default {
  /** @param {{model: Model}} ctx */
  initialize({ model }) {
    const phone = new BrowserPhone(model);
    const key = model.get("_key");
    phones.set(key, phone);
    return () => {
      phone.dispose();
      phones.delete(key);
    };
  },
  /** @param {{model: Model, el: HTMLElement}} ctx */
  render({ model, el }) {
    const phone = phones.get(model.get("_key"));
    if (!phone) throw new Error("nbcall: the phone's model was not initialized");
    return renderPhone(model, el, phone);
  },
};
