// Which browser tab this is: an ID that a page reload keeps and another tab does not share, so that Python
// tells a reloaded page (its peer connections are gone) from a second tab showing the same phones.

const KEY = "nbcall-page";
// Set when the page goes away (a reload, or leaving the tab): only then does the next page load in this tab
// take the ID over. A duplicated tab starts with a copy of its original's sessionStorage but without this mark,
// so it gets an ID of its own.
const LEFT = "nbcall-page-left";

/**
 * @typedef {Pick<Storage, "getItem" | "setItem" | "removeItem">} SessionStore
 * @typedef {{addEventListener(type: "pagehide", listener: () => void): void}} PageEvents
 */

/**
 * This tab's page ID, kept in `store` (sessionStorage: per tab, survives a reload). Without a store (storage
 * blocked) every load gets a new ID, and a reload then looks like another tab.
 * @param {SessionStore | null | undefined} store @param {PageEvents | null | undefined} events
 * @returns {string}
 */
export function tabId(store, events) {
  const fresh = () => globalThis.crypto?.randomUUID?.() ?? `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
  if (!store) return fresh();
  try {
    let id = store.getItem(KEY);
    if (!id || store.getItem(LEFT) !== id) {
      id = fresh();
      store.setItem(KEY, id);
    }
    store.removeItem(LEFT);
    const kept = id;
    events?.addEventListener("pagehide", () => store.setItem(LEFT, kept));
    return id;
  } catch {
    return fresh(); // storage refused (a sandboxed frame, privacy settings)
  }
}

/**
 * The ID of the page this code runs in: decided once per page and shared by every phone in it (each widget
 * model may load its own copy of this bundle, and only the first load may read the "left" mark).
 * @returns {string}
 */
export function pageId() {
  const page = /** @type {{__nbcallPageId?: string}} */ (globalThis);
  if (!page.__nbcallPageId) {
    let store = null;
    try {
      store = globalThis.sessionStorage ?? null;
    } catch {
      store = null; // reading sessionStorage itself throws where storage is blocked
    }
    const events = typeof globalThis.addEventListener === "function" ? /** @type {PageEvents} */ (globalThis) : null;
    page.__nbcallPageId = tabId(store, events);
  }
  return page.__nbcallPageId;
}
