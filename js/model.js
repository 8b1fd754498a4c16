// What the phone needs from an anywidget model, in a form every host supports.

/**
 * Call `cb` when any of the traits `names` changes; returns the unsubscribe.
 * One `model.on` per trait: Jupyter's Backbone model splits a space-separated list of events, marimo's
 * model takes one event name and would never fire for such a list.
 * @param {any} model @param {string[]} names trait names @param {() => void} cb
 * @returns {() => void}
 */
export function onChanges(model, names, cb) {
  const events = names.map((name) => `change:${name}`);
  for (const event of events) model.on(event, cb);
  return () => {
    for (const event of events) model.off(event, cb);
  };
}
