// The part of the anywidget model the phone uses, typed, and onChanges() to follow several traits.

/**
 * The synced traits of nbcall.Phone (nbcall/widget/phone.py) that the browser reads.
 * @typedef {{
 *   _key: string,
 *   _settings: Partial<Record<string, number>> | undefined,
 *   _engine_page: string | undefined,
 *   user_id: string,
 *   state: string,
 *   peer: string,
 *   peers: string[],
 *   error: string,
 *   online: boolean,
 *   server_address: string,
 *   audio: boolean | MediaTrackConstraints,
 *   video: boolean | MediaTrackConstraints,
 *   mic_on: boolean,
 *   camera_on: boolean,
 *   local_media: Partial<import("./protocol.js").MediaFlags> | undefined,
 *   remote_media: Partial<import("./protocol.js").MediaFlags> | undefined,
 *   media_error: string,
 *   room: string,
 *   members: string[],
 *   connections: Record<string, string>,
 *   invitation: {room?: string, from?: string, members?: string[]},
 *   closed: boolean,
 *   stepping: boolean,
 *   held: HeldMessage[],
 * }} Traits
 * @typedef {{type: string, to: string, peer_will: string, after_us: string, after_peer: string}} HeldMessage
 */

/**
 * A custom message handler: the content and the buffers that came with it.
 * @typedef {(content: unknown, buffers: DataView[]) => void} CustomHandler
 */

/**
 * The anywidget model methods the phone calls (Jupyter's and marimo's models both have them).
 * @typedef {{
 *   get<K extends keyof Traits>(name: K): Traits[K],
 *   on(event: string, callback: (...args: never[]) => void): void,
 *   off(event: string, callback?: (...args: never[]) => void): void,
 *   send(content: object, callbacks?: unknown, buffers?: (ArrayBuffer | ArrayBufferView)[]): void,
 * }} Model
 */

/**
 * Call `callback` when any of the traits `names` changes; returns the unsubscribe.
 * One `model.on` per trait: marimo's model takes one event name per call, and "change:a change:b" never
 * fires there (it does in Jupyter, which splits on spaces).
 * @param {Pick<Model, "on" | "off">} model
 * @param {readonly (keyof Traits)[]} names
 * @param {() => void} callback
 * @returns {() => void}
 */
export function onChanges(model, names, callback) {
  for (const name of names) model.on(`change:${name}`, callback);
  return () => {
    for (const name of names) model.off(`change:${name}`, callback);
  };
}
