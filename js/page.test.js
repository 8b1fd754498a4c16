// The tab's page ID (node --test) with a stand-in for sessionStorage: kept across a reload, new in another tab.
import assert from "node:assert/strict";
import { test } from "node:test";
import { tabId } from "./page.js";

/** A tab's sessionStorage and its pagehide listeners; `copy()` is what a duplicated tab starts with. */
function tab(items = new Map()) {
  /** @type {(() => void)[]} */
  const hide = [];
  return {
    items,
    store: {
      /** @param {string} k */ getItem: (k) => items.get(k) ?? null,
      /** @param {string} k @param {string} v */ setItem: (k, v) => void items.set(k, v),
      /** @param {string} k */ removeItem: (k) => void items.delete(k),
    },
    events: {
      /** @param {string} _type @param {() => void} listener */
      addEventListener(_type, listener) {
        hide.push(listener);
      },
    },
    /** The page goes away (reload, or the tab closes). */
    leave: () => hide.splice(0).forEach((f) => f()),
    copy: () => tab(new Map(items)),
  };
}

test("a reloaded page keeps its tab's ID; another tab, or a duplicated one, gets its own", () => {
  const first = tab();
  const id = tabId(first.store, first.events);
  assert.equal(tabId(tab().store, null) === id, false); // another tab: its own sessionStorage
  const duplicate = first.copy(); // a duplicated tab copies sessionStorage while the first is still open
  assert.notEqual(tabId(duplicate.store, duplicate.events), id);
  first.leave(); // reload: the page goes, the next load in the same tab takes the ID over
  assert.equal(tabId(first.store, first.events), id);
  assert.notEqual(tabId(first.store, first.events), id, "a second load without leaving is not a reload");
});

test("without storage (blocked) every load gets a new ID", () => {
  assert.notEqual(tabId(null, null), tabId(null, null));
  const broken = { getItem() { throw new Error("SecurityError"); }, setItem() {}, removeItem() {} };
  assert.match(tabId(broken, null), /\S+/);
});
