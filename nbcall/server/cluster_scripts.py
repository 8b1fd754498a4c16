"""The Lua scripts that change nbcall's registry in Redis (:mod:`nbcall.server.cluster`), each one atomic.

Keys and channels are those the cluster module's docstring lists, under the prefix each script gets as its first
argument.
"""

from __future__ import annotations

__all__ = ["CLAIM", "HEARTBEAT", "HOLD_ROOM", "RELEASE", "RETIRE"]

_FORGET = """
local function forget(p, node)
  for _, room in ipairs(redis.call('SMEMBERS', p .. ':rooms:' .. node)) do
    if redis.call('HGET', p .. ':room', room) == node then
      redis.call('HDEL', p .. ':room', room)
    end
  end
  redis.call('DEL', p .. ':rooms:' .. node)
  local ids, n = p .. ':node:' .. node, 0
  for _, id in ipairs(redis.call('SMEMBERS', ids)) do
    if redis.call('HGET', p .. ':owner', id) == node then
      redis.call('HDEL', p .. ':owner', id)
      redis.call('HDEL', p .. ':secret', id)
      redis.call('PUBLISH', p .. ':presence', 'l\\0' .. id .. '\\0' .. node)
      n = n + 1
    end
  end
  redis.call('DEL', ids)
  redis.call('SREM', p .. ':nodes', node)
  return n
end
"""

# A room's node: the live node holding it, else this one (which then re-creates it from its members' reports).
_ROOM_NODE = """
local function room_node(p, room, node)
  local holder = redis.call('HGET', p .. ':room', room)
  if holder and holder ~= node and redis.call('EXISTS', p .. ':alive:' .. holder) == 1 then
    return holder
  end
  redis.call('HSET', p .. ':room', room, node)
  redis.call('SADD', p .. ':rooms:' .. node, room)
  return node
end
"""

#: ARGV: prefix, ID, node, secret digest ("" for none), mode ("claim" or "assert": no takeover), room ("": none).
#: Returns {outcome, the ID's previous node or "", the room's node or ""}.
CLAIM = (
    _ROOM_NODE
    + """
local p, id, node, digest, mode, room = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local owner = redis.call('HGET', p .. ':owner', id)
local outcome = 'ok'
if owner and owner ~= node then
  if redis.call('EXISTS', p .. ':alive:' .. owner) == 1 then
    local known = redis.call('HGET', p .. ':secret', id)
    if mode ~= 'claim' or digest == '' or known ~= digest then
      return {'taken', owner, ''}
    end
    outcome = 'moved'
  end
  redis.call('SREM', p .. ':node:' .. owner, id)
  -- 'm': the phone moved (its node is alive); 't': taken from a node taken for gone.
  local kind = outcome == 'moved' and 'm' or 't'
  redis.call('PUBLISH', p .. ':presence', kind .. '\\0' .. id .. '\\0' .. owner .. '\\0' .. node)
elseif not owner then
  redis.call('PUBLISH', p .. ':presence', 'j\\0' .. id .. '\\0' .. node)
end
redis.call('HSET', p .. ':owner', id, node)
redis.call('HSET', p .. ':secret', id, digest)
redis.call('SADD', p .. ':node:' .. node, id)
return {outcome, owner or '', room ~= '' and room_node(p, room, node) or ''}
"""
)

#: ARGV: prefix, room, node, "1" (this node made it: hold it unless a live node does) or "" (it ended here).
HOLD_ROOM = (
    _ROOM_NODE
    + """
local p, room, node, made = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if made == '1' then
  return room_node(p, room, node)
end
if redis.call('HGET', p .. ':room', room) == node then
  redis.call('HDEL', p .. ':room', room)
end
redis.call('SREM', p .. ':rooms:' .. node, room)
return ''
"""
)

#: ARGV: prefix, ID, node.
RELEASE = """
local p, id, node = ARGV[1], ARGV[2], ARGV[3]
if redis.call('HGET', p .. ':owner', id) ~= node then return 0 end
redis.call('HDEL', p .. ':owner', id)
redis.call('HDEL', p .. ':secret', id)
redis.call('SREM', p .. ':node:' .. node, id)
redis.call('PUBLISH', p .. ':presence', 'l\\0' .. id .. '\\0' .. node)
return 1
"""

#: ARGV: prefix, node, TTL in ms. Returns {whether this node's alive key still existed, IDs forgotten}.
HEARTBEAT = (
    _FORGET
    + """
local p, node, ttl = ARGV[1], ARGV[2], ARGV[3]
local existed = redis.call('EXISTS', p .. ':alive:' .. node)
redis.call('SET', p .. ':alive:' .. node, '1', 'PX', ttl)
redis.call('SADD', p .. ':nodes', node)
local forgotten = 0
for _, other in ipairs(redis.call('SMEMBERS', p .. ':nodes')) do
  if redis.call('EXISTS', p .. ':alive:' .. other) == 0 then
    forgotten = forgotten + forget(p, other)
  end
end
return {existed, forgotten}
"""
)

#: ARGV: prefix, node. A node shutting down frees its IDs at once.
RETIRE = (
    _FORGET
    + """
local p, node = ARGV[1], ARGV[2]
redis.call('DEL', p .. ':alive:' .. node)
return forget(p, node)
"""
)
