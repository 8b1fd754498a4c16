// Building DOM elements: the helpers the view modules use.

/**
 * An element with properties (or attributes, for names that are not properties), `class`, `dataset`.
 * @template {keyof HTMLElementTagNameMap} T
 * @param {T} tag
 * @param {Record<string, string | boolean | Record<string, string>>} props
 * @param {(Node | string)[]} children
 * @returns {HTMLElementTagNameMap[T]}
 */
export function h(tag, props = {}, children = []) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "class") el.className = String(v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k in el) /** @type {Record<string, unknown>} */ (/** @type {unknown} */ (el))[k] = v;
    else el.setAttribute(k, String(v));
  }
  el.append(...children);
  return el;
}

/**
 * A teaching panel under a phone, closed until clicked: `<details class="NAME-details">` titled `title`, holding
 * `children`, appended to `root`.
 * @param {HTMLElement} root @param {string} name @param {string} title @param {Node[]} children
 * @returns {HTMLDetailsElement}
 */
export function panel(root, name, title, children) {
  const details = h("details", { class: `${name}-details` }, [h("summary", {}, [title]), ...children]);
  root.append(details);
  return details;
}
