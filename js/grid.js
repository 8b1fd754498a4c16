// Which members get a tile in a room's video grid: at most `limit` remote tiles (the `max_tiles` setting), those
// sending video first, in the room's order, so that a presenter is always shown. The others are counted, heard
// (their audio plays) and not shown; in an SFU room the phone does not even receive their video.

/**
 * @param {readonly string[]} members the room's members in the order they joined (this phone included)
 * @param {string} user this phone's ID
 * @param {(member: string) => boolean} sendsVideo
 * @param {number} limit
 * @returns {{shown: string[], hidden: string[]}}
 */
export function chooseTiles(members, user, sendsVideo, limit) {
  const others = members.filter((m) => m !== user);
  const ordered = [...others.filter((m) => sendsVideo(m)), ...others.filter((m) => !sendsVideo(m))];
  const shown = new Set(ordered.slice(0, Math.max(0, limit)));
  return { shown: others.filter((m) => shown.has(m)), hidden: others.filter((m) => !shown.has(m)) };
}

/** What the grid says of the members it does not show. @param {number} count */
export function hiddenText(count) {
  if (!count) return "";
  return `${count} more member${count === 1 ? "" : "s"} not shown (heard, not seen)`;
}
