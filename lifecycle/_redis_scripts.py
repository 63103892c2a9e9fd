"""The server-side scripts of `RedisRegistry`: every read-modify-write is one of these, atomic.

Every script gets the keys it may touch (`keys_for`; all under one `{namespace}` hash tag, so one
Redis Cluster slot) and the same first `HEAD` ARGV (the `SHORT` heartbeat scripts only the first
three), which the prelude decodes into locals every script body sees:

1. ``MAXLEN``: the event log's approximate maximum length (0: no log);
2. ``TIMEOUT``: the default heartbeat timeout in microseconds (a service's own, where it has one, wins);
3. ``LOG_BEATS``: whether heartbeats go to the log ('1' or '0');
4. ``MAX_RESTARTS``: restart intensity, restarts allowed within the window ('': off);
5. ``WINDOW``: the restart window in microseconds;
6. ``PHI_SCORE``: the phi detector's standard score at its threshold ('': the fixed detector);
7. to 10. the phi detector's max sample size, minimum standard deviation, acceptable pause and
   first interval estimate (the last three in microseconds).

Items 4 to 10 come from `StoreSettings` (`RedisRegistry.configure`), sent with every call. A
script's own arguments follow, from ``ARGV[11]``. Times are the server's `TIME` in integer
microseconds, formatted with %d because Lua's default number formatting would round them. A
script returns a code, then data, then the events it appended to the log, each as a flat field
list that `lifecycle._redis_codec` decodes.
"""

from __future__ import annotations

import functools
import re

KEYS = ("svc", "reg", "names", "status", "last", "upd", "attempt", "dl", "todo", "claim",
        "lease", "epoch", "tick", "gen", "events", "tmo", "rst", "flap", "phi", "phiv", "own", "oclaim", "rebase")

_LUA_NAMES = {"svc": "K_SVC", "reg": "K_REG", "names": "K_NAMES", "status": "K_STATUS", "last": "K_LAST",
              "upd": "K_UPD", "attempt": "K_ATT", "dl": "K_DL", "todo": "K_TODO", "claim": "K_CLAIM",
              "lease": "K_LEASE", "epoch": "K_EPOCH", "tick": "K_TICK", "gen": "K_GEN", "events": "K_EVENTS",
              "tmo": "K_TMO", "rst": "K_RST", "flap": "K_FLAP", "phi": "K_PHI", "phiv": "K_PHIV",
              "own": "K_OWN", "oclaim": "K_OCLAIM", "rebase": "K_REBASE"}

# Every declared key costs each call a little (about 1 us on loopback, more through a cluster
# client, which hashes each key to check they share a slot), so each script declares exactly the
# keys its body and the prelude functions it calls name (`keys_for`). HEARTBEAT, the hot one,
# handles a RUNNING (or STARTING) service alone and leaves a revival to REVIVE.


@functools.cache
def keys_for(name: str) -> tuple[str, ...]:
    """The keys script `name` declares, in KEYS order: those its text names (a key it never names is left out)."""
    body: str = globals()[name]
    code = re.sub(r"--[^\n]*", "", prelude_for(body) + body)  # a key named in a comment is not used
    if re.search(r"\bKEYS\b", code):
        return KEYS  # it walks KEYS itself (CLEAR): all of them, which also routes it to the namespace's slot
    return tuple(key for key, lua in _LUA_NAMES.items() if re.search(rf"\b{lua}\b", code))


HEAD = 10
"""How many leading ARGV every script gets (see the module's docstring); its own arguments follow."""

PRELUDE = """
local MAXLEN = tonumber(ARGV[1])
local TIMEOUT = tonumber(ARGV[2])
local LOG_BEATS = ARGV[3] == '1'
local MAX_RESTARTS = tonumber(ARGV[4])
local WINDOW = tonumber(ARGV[5])
local PHI = ARGV[6] ~= ''
local PHI_SCORE, PHI_MAX, PHI_MIN_STD, PHI_PAUSE, PHI_FIRST
if PHI then
  PHI_SCORE, PHI_MAX, PHI_MIN_STD = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
  PHI_PAUSE, PHI_FIRST = tonumber(ARGV[9]), tonumber(ARGV[10])
end
local T = redis.call('TIME')
local NOW = tonumber(T[1]) * 1000000 + tonumber(T[2])
local OUT = {}
local PHI_BLOCK = 32  -- intervals per field of the phi detector's ring (see phi_add)
local function s(n) return string.format('%d', n) end
local function log(fields)
  if MAXLEN > 0 then redis.call('XADD', K_EVENTS, 'MAXLEN', '~', MAXLEN, '*', unpack(fields)) end
end
local function emit(kind, id, ...)
  local fields = {'type', kind, 'id', id, 'ts', s(NOW), ...}
  log(fields)
  OUT[#OUT + 1] = fields
end
-- The service's own heartbeat timeout (TransportConfig.heartbeat_timeout_secs), else the default.
local function tmo(id)
  local own = redis.call('HGET', K_TMO, id)
  if own then return tonumber(own) end
  return TIMEOUT
end
-- The phi detector (`History` in lifecycle/phi.py), per service: in K_PHI the running sum, sum of squares
-- and count of its last PHI_MAX heartbeat intervals (microseconds), the ring slot the next interval goes
-- to and the ring's size, as doubles packed '<ddddd'; in K_PHIV the intervals, in a ring of PHI_MAX
-- slots kept in blocks of PHI_BLOCK packed doubles, field `id#block`, so that learning an interval
-- rewrites a few hundred bytes, not the whole history. Its last heartbeat is K_LAST's.
local function phi_limit(t, total, squares, n)
  -- History.limit: mean + acceptable pause + score * max(std, min std), never beyond the timeout t
  local mean = total / n
  local std = math.max(math.sqrt(math.max(0, squares / n - mean * mean)), PHI_MIN_STD)
  return math.min(t, math.max(0, mean + PHI_PAUSE + PHI_SCORE * std))
end
-- Microseconds of silence after which the service is timed out: every deadline is last + limit(id).
local function limit(id)
  local t = tmo(id)
  if PHI then
    local sums = redis.call('HGET', K_PHI, id)
    if sums then return phi_limit(t, struct.unpack('<ddd', sums)) end
  end
  return t
end
local function phi_forget(id, size)
  local fields = {}
  for b = 0, math.floor((size - 1) / PHI_BLOCK) do fields[#fields + 1] = id .. '#' .. b end
  redis.call('HDEL', K_PHIV, unpack(fields))
  redis.call('HDEL', K_PHI, id)
end
-- History._add for each of `intervals`: once PHI_MAX are kept, the oldest goes. Returns the new sums.
-- `sums`: K_PHI's value if the caller has read it (false: the service has no history yet).
local function phi_add(id, intervals, sums)
  local total, squares, n, w, size = 0, 0, 0, 0, PHI_MAX
  if sums == nil then sums = redis.call('HGET', K_PHI, id) end
  if sums then
    total, squares, n, w, size = struct.unpack('<ddddd', sums)
    if size ~= PHI_MAX then  -- kept under another max_sample_size: start afresh with this one
      phi_forget(id, size)
      total, squares, n, w, size = 0, 0, 0, 0, PHI_MAX
    end
  end
  for _, x in ipairs(intervals) do
    local field = id .. '#' .. math.floor(w / PHI_BLOCK)
    local block = redis.call('HGET', K_PHIV, field) or ''
    local at = (w % PHI_BLOCK) * 8
    if n >= PHI_MAX then  -- the slot holds the oldest interval
      local old = struct.unpack('<d', block, at + 1)
      total, squares, n = total - old, squares - old * old, n - 1
    end
    redis.call('HSET', K_PHIV, field, string.sub(block, 1, at) .. struct.pack('<d', x) .. string.sub(block, at + 9))
    total, squares, n, w = total + x, squares + x * x, n + 1, (w + 1) % PHI_MAX
  end
  redis.call('HSET', K_PHI, id, struct.pack('<ddddd', total, squares, n, w, PHI_MAX))
  return total, squares, n
end
-- A service becomes RUNNING: a history seeded as History seeds it (two intervals at first -/+ first/4),
-- unless it has one (after a reconnect the outage is no interval to learn).
local function phi_seed(id)
  if PHI and redis.call('HEXISTS', K_PHI, id) == 0 then
    phi_add(id, {PHI_FIRST - PHI_FIRST / 4, PHI_FIRST + PHI_FIRST / 4}, false)
  end
end
-- A heartbeat of a service with a history (History.beat): learn the interval since its last one,
-- capped at its timeout t; a service without one gets a seeded one. Returns its new limit.
local function phi_beat(id, t)
  local last = redis.call('HGET', K_LAST, id)
  local sums = redis.call('HGET', K_PHI, id)
  if not sums then
    return phi_limit(t, phi_add(id, {PHI_FIRST - PHI_FIRST / 4, PHI_FIRST + PHI_FIRST / 4}, false))
  end
  if not last then return phi_limit(t, struct.unpack('<ddd', sums)) end
  return phi_limit(t, phi_add(id, {math.min(t, math.max(0, NOW - tonumber(last)))}, sums))
end
-- `known`: the status the caller just read (nil: read it here).
local function set_status(id, new, known)
  local old = known or redis.call('HGET', K_STATUS, id)
  if old == new then return old end
  redis.call('HSET', K_STATUS, id, new)
  redis.call('HSET', K_UPD, id, s(NOW))
  if new == 'running' then
    phi_seed(id)
    local last = tonumber(redis.call('HGET', K_LAST, id) or s(NOW))
    redis.call('ZADD', K_DL, s(last + limit(id)), id)
    redis.call('HDEL', K_ATT, id)
    redis.call('HDEL', K_FLAP, id)  -- RUNNING again: no longer flapping (its restart times stay)
  else
    redis.call('ZREM', K_DL, id)
  end
  if new ~= 'reconnecting' and old ~= 'running' then  -- a RUNNING service has no attempt due or claimed
    redis.call('ZREM', K_TODO, id)
    redis.call('HDEL', K_CLAIM, id)
  end
  emit('status_changed', id, 'old', old, 'new', new)
  return old
end
-- mode, attempt, delay_us, max_attempts; `known`: the status the caller just read (nil: unknown)
local function plan(id, mode, k, delay, max, known)
  if mode == 'retry' then
    set_status(id, 'reconnecting', known)
    redis.call('HSET', K_ATT, id, k)
    if known ~= 'running' then redis.call('HDEL', K_CLAIM, id) end
    redis.call('ZADD', K_TODO, s(NOW + tonumber(delay)), id)
    emit('reconnecting', id, 'attempt', k, 'max_attempts', max, 'delay', delay)
  elseif mode == 'giveup' then
    set_status(id, 'error', known)
    redis.call('HSET', K_ATT, id, s(tonumber(k) - 1))
    emit('reconnect_failed', id, 'attempts', s(tonumber(k) - 1))
  else
    set_status(id, 'error', known)
  end
end
-- Restart intensity: the service's restart times within the window now (microseconds, oldest first).
local function restart_times(id)
  local times = {}
  local raw = redis.call('HGET', K_RST, id)
  if raw then
    for t in string.gmatch(raw, '%d+') do
      t = tonumber(t)
      if t > NOW - WINDOW then times[#times + 1] = t end
    end
  end
  return times
end
-- A restart now: recorded (at most MAX_RESTARTS + 1 kept); returns the restarts it makes if it is one
-- too many within the window, else nil.
local function restart(id)
  local times = restart_times(id)
  local over = nil
  if #times >= MAX_RESTARTS then over = #times + 1 end
  times[#times + 1] = NOW
  local kept = {}
  for i = math.max(1, #times - MAX_RESTARTS), #times do kept[#kept + 1] = s(times[i]) end
  redis.call('HSET', K_RST, id, table.concat(kept, ','))
  return over
end
-- A RUNNING service timed out, or an error was reported, and `plan` follows: with auto-reconnect (any
-- plan but 'error') that begins a reconnect cycle, which restart intensity may refuse: the service
-- then stays ERROR, flapping, with no reconnect.
local function begin_cycle(id, mode, k, delay, max, known)
  if mode ~= 'error' and MAX_RESTARTS then
    local over = restart(id)
    if over then
      set_status(id, 'error', known)
      redis.call('HSET', K_FLAP, id, '1')
      emit('service_flapping', id, 'restarts', s(over), 'window', s(WINDOW))
      return
    end
  end
  plan(id, mode, k, delay, max, known)
end
local function fenced(owner) return redis.call('GET', K_LEASE) ~= owner end
-- Ownership of a process-bound service: 'holder|until_us|epoch|child' (holder '' once given up; child
-- the owner's record of itself and its live child, engine/leftover.py; '' when none is recorded).
local function ownership(id)
  local rec = redis.call('HGET', K_OWN, id)
  if not rec then return '', 0, 0, '' end
  local holder, till, epoch, child = string.match(rec, '^([^|]*)|(%d+)|(%d+)|?([^|]*)$')
  return holder, tonumber(till), tonumber(epoch), child
end
local function holder_of(id)
  local holder, till = ownership(id)
  if holder ~= '' and till > NOW then return holder end
  return nil
end
local function forget(id)
  local json = redis.call('HGET', K_SVC, id)
  if json then redis.call('HDEL', K_NAMES, cjson.decode(json).name) end
  for _, k in ipairs({K_SVC, K_REG, K_STATUS, K_LAST, K_UPD, K_ATT, K_CLAIM, K_TMO, K_RST, K_FLAP, K_OWN, K_OCLAIM}) do
    redis.call('HDEL', k, id)
  end
  local sums = redis.call('HGET', K_PHI, id)
  if sums then phi_forget(id, select(5, struct.unpack('<ddddd', sums))) end
  redis.call('ZREM', K_DL, id)
  redis.call('ZREM', K_TODO, id)
end
local function registered(json)
  -- The service's JSON as stored: the registration time first, as "r" (one hash field per service
  -- instead of two; K_REG holds it for a record written before).
  return '{"r":' .. s(NOW) .. ',' .. string.sub(json, 2)
end
local function restore_one(id, json, name, own)
  if redis.call('HEXISTS', K_STATUS, id) == 1 or redis.call('HEXISTS', K_NAMES, name) == 1 then return 'present' end
  if own ~= '' then redis.call('HSET', K_TMO, id, own) end
  redis.call('HSET', K_SVC, id, registered(json))
  redis.call('HSET', K_NAMES, name, id)
  redis.call('HSET', K_STATUS, id, 'running')
  redis.call('HSET', K_UPD, id, s(NOW))
  redis.call('HSET', K_LAST, id, s(NOW))
  phi_seed(id)
  redis.call('ZADD', K_DL, s(NOW + limit(id)), id)
  return 'restored'
end
local function info(id)
  local last = redis.call('HGET', K_LAST, id)
  local silent = -1
  if last then silent = math.max(0, NOW - tonumber(last)) end
  return {redis.call('HGET', K_SVC, id), redis.call('HGET', K_REG, id) or '0', redis.call('HGET', K_UPD, id) or '0',
          redis.call('HGET', K_STATUS, id), s(silent), redis.call('HGET', K_ATT, id) or '0', s(NOW), id}
end
-- An outage's rebase of one service (see SWEEP): silent since before `since`, it gets a fresh full
-- deadline from now. True if it did.
local function rebase_one(id, since)
  if tonumber(redis.call('HGET', K_LAST, id) or '0') >= since then return false end
  redis.call('ZADD', K_DL, s(NOW + limit(id)), id)
  redis.call('HSET', K_LAST, id, s(NOW))
  return true
end
-- One heartbeat's hot path (`now`: NOW formatted once by the caller): the prior status, 'missing', or
-- 'revive' for a RECONNECTING or ERROR service, left to REVIVE, which declares every key and checks again.
-- `learn` (calling phi_beat, or nil for the fixed detector) turns the timeout into the silence allowed next.
local function beat(id, now, learn)
  local st = redis.call('HGET', K_STATUS, id)
  if st == 'running' then
    local silence = tmo(id)
    if learn then silence = learn(id, silence) end
    redis.call('HSET', K_LAST, id, now)
    redis.call('ZADD', K_DL, s(NOW + silence), id)
  elseif st == 'starting' then
    redis.call('HSET', K_LAST, id, now)
  elseif st == 'reconnecting' or st == 'error' then
    return 'revive'
  else
    return st or 'missing'
  end
  if LOG_BEATS then log({'type', 'heartbeat_received', 'id', id, 'ts', now}) end
  return st
end
"""

# ARGV[11..]: id, name, version, json, status, join ('1' or '0'), own timeout_us ('': none)
REGISTER = """
local id, name, version, json, status, join = ARGV[11], ARGV[12], ARGV[13], ARGV[14], ARGV[15], ARGV[16] == '1'
local named = redis.call('HGET', K_NAMES, name)
-- As in the in-memory registry, a taken name is reported before a taken id.
if named and not join then return {'name_taken', named} end
if redis.call('HEXISTS', K_STATUS, id) == 1 then
  if join and named == id then return {'joined', id} end
  return {'id_taken', id}
end
if named then
  if join and cjson.decode(redis.call('HGET', K_SVC, named)).version == version then return {'joined', named} end
  return {'name_taken', named}
end
redis.call('HSET', K_SVC, id, registered(json))
redis.call('HSET', K_NAMES, name, id)
redis.call('HSET', K_STATUS, id, status)
redis.call('HSET', K_UPD, id, s(NOW))
if ARGV[17] ~= '' then redis.call('HSET', K_TMO, id, ARGV[17]) end
if status == 'running' then
  phi_seed(id)
  redis.call('ZADD', K_DL, s(NOW + limit(id)), id)
end
return {'new', id}
"""

# ARGV[11..]: id, json, name, own timeout_us ('': none) -- re-register a service the registry lost
RESTORE = """
return {restore_one(ARGV[11], ARGV[12], ARGV[13], ARGV[14])}
"""

# ARGV[11..]: RESTORE's four arguments for each service -- restore many at once, each answered
# 'restored' or 'present'. Not guarded against a re-send: one re-sent after a lost reply answers
# 'present' for what it restored the first time (the state is the same either way).
RESTORE_MANY = """
local out = {}
for i = 11, #ARGV, 4 do out[#out + 1] = restore_one(ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]) end
return out
"""

# ARGV[11..]: id, emit ('1': the manager's stop, with STOPPED and service_stopped)
UNREGISTER = """
local id = ARGV[11]
if redis.call('HEXISTS', K_STATUS, id) == 0 then return {'missing'} end
local before = info(id)
if ARGV[12] == '1' then
  set_status(id, 'stopped')
  emit('service_stopped', id)
end
forget(id)
return {'ok', before, OUT}
"""

# ARGV[11..]: id -- the hot path: a RUNNING (or STARTING) service's heartbeat; 'revive' for a RECONNECTING or
# ERROR one, which the caller then sends to REVIVE (with every key): the status is checked again there.
# The fixed detector's; HEARTBEAT_PHI is the phi detector's (its history's keys declared, its functions
# defined: each costs every call a little, so the client runs the one its settings ask for).
HEARTBEAT = """
return {beat(ARGV[4], s(NOW))}
"""
HEARTBEAT_PHI = """
return {beat(ARGV[11], s(NOW), function(id, t) return phi_beat(id, t) end)}
"""

# ARGV[4..] (a SHORT script): ids -- HEARTBEAT for each, in one script: the prelude, the arguments and the call are paid
# once per batch, not once per beat. Codes in order; the caller sends those answering 'revive' to REVIVE.
BEAT_MANY = """
local now, codes = s(NOW), {}
for i = 4, #ARGV do codes[i - 3] = beat(ARGV[i], now) end
return codes
"""
BEAT_MANY_PHI = """
local now, codes = s(NOW), {}
local function learn(id, t) return phi_beat(id, t) end  -- a call, so that the prelude defines phi_beat
for i = 11, #ARGV do codes[i - 10] = beat(ARGV[i], now, learn) end
return codes
"""

# ARGV[11..]: id -- any heartbeat: a RECONNECTING or ERROR service becomes RUNNING again; the silence it
# ends is learned (capped at its timeout), as the in-memory revival does: it may have been falsely suspected.
REVIVE = """
local id = ARGV[11]
local st = redis.call('HGET', K_STATUS, id)
if not st then return {'missing'} end
if st == 'stopping' or st == 'stopped' then return {st} end
if PHI and st ~= 'starting' then phi_beat(id, tmo(id)) end
redis.call('HSET', K_LAST, id, s(NOW))
if st == 'running' then
  redis.call('ZADD', K_DL, s(NOW + limit(id)), id)
elseif st == 'reconnecting' or st == 'error' then
  set_status(id, 'running')
  emit('reconnected', id)
end
if LOG_BEATS then log({'type', 'heartbeat_received', 'id', id, 'ts', s(NOW)}) end
return {st, OUT}
"""

# ARGV[11..]: id
ACTIVATE = """
local id = ARGV[11]
local st = redis.call('HGET', K_STATUS, id)
if st ~= 'starting' then return {st or 'missing'} end
redis.call('HSET', K_LAST, id, s(NOW))
emit('service_started', id)
set_status(id, 'running')
return {st, OUT}
"""

# ARGV[11..]: id, new status, expected status ('' for any)
SET_STATUS = """
local id, new, expected = ARGV[11], ARGV[12], ARGV[13]
local st = redis.call('HGET', K_STATUS, id)
if not st then return {'missing'} end
if expected ~= '' and st ~= expected then return {st} end
set_status(id, new)
return {st, OUT}
"""

# ARGV[11..]: id, error text, plan mode ('' for none), attempt, delay_us, max_attempts
REPORT_ERROR = """
local id = ARGV[11]
local st = redis.call('HGET', K_STATUS, id)
if not st then return {'missing'} end
if st == 'stopping' or st == 'stopped' or st == 'starting' then return {st} end
emit('service_error', id, 'error', ARGV[12])
if st ~= 'reconnecting' then
  set_status(id, 'error')
  -- A flapping service ignores error plans until it is RUNNING again or restarted.
  if ARGV[13] ~= '' and redis.call('HEXISTS', K_FLAP, id) == 0 then
    begin_cycle(id, ARGV[13], ARGV[14], ARGV[15], ARGV[16])
  end
end
return {st, OUT}
"""

# ARGV[11..]: id
BEGIN_STOP = """
local id = ARGV[11]
local st = redis.call('HGET', K_STATUS, id)
if not st then return {'missing'} end
if st == 'stopping' or st == 'stopped' then return {st} end
set_status(id, 'stopping')
return {st, OUT}
"""

# ARGV[11..]: id, status, timeout_us -- the Registry protocol's plain expire (a leader's SWEEP times services out)
EXPIRE = """
local id, timeout = ARGV[11], tonumber(ARGV[13])
if redis.call('HGET', K_STATUS, id) ~= 'running' then return {'skip'} end
local last = redis.call('HGET', K_LAST, id)
if last and tonumber(last) + timeout > NOW then
  redis.call('ZADD', K_DL, s(tonumber(last) + limit(id)), id)
  return {'early'}
end
set_status(id, ARGV[12])
return {'expired', OUT}
"""

# ARGV[11..]: owner, ttl_ms (0: a peek that seeks nothing), a new generation marker (used if the server has none),
# '1' to ask politely (a free lease is left free: 'free')
LEASE = """
local owner = ARGV[11]
local gen = redis.call('GET', K_GEN)
if not gen then
  gen = ARGV[13]
  redis.call('SET', K_GEN, gen)
end
local holder = redis.call('GET', K_LEASE)
if ARGV[12] == '0' then return {holder == owner and 'leader' or 'follower', gen} end
if holder == owner then
  redis.call('PEXPIRE', K_LEASE, ARGV[12])
  return {'leader', gen}
end
if holder then return {'follower', gen} end
if ARGV[14] == '1' then return {'free', gen} end
redis.call('SET', K_LEASE, owner, 'PX', ARGV[12])
redis.call('INCR', K_EPOCH)
-- Attempts an earlier leader had claimed are void (it is fenced now): they are due again at once.
for _, id in ipairs(redis.call('HKEYS', K_CLAIM)) do redis.call('ZADD', K_TODO, s(NOW), id) end
redis.call('DEL', K_CLAIM)
return {'leader', gen}
"""

# ARGV[11..]: owner
RELEASE = """
if redis.call('GET', K_LEASE) == ARGV[11] then redis.call('DEL', K_LEASE) end
return {'ok'}
"""

# ARGV[11..]: owner, grace_us, batch limit, tick_us -- a claimed attempt is parked for its connect timeout plus the
# leader's tick: if its outcome never comes (lost with a restarted server), it is handed out again then.
# Then the onset (`lifecycle.fleet.Onset`): auto_reconnect ('1'/'0'), max attempts, the first delay's window
# low_us and high_us, a seed. Each due service still RUNNING times out here and begins its cycle: one script
# and one round trip for a burst's batch, with what it read at hand (it was two until 2026-12).
SWEEP = """
local owner, grace, batch, tick_us = ARGV[11], tonumber(ARGV[12]), tonumber(ARGV[13]), tonumber(ARGV[14])
local O_AUTO, O_MAX, O_LOW = ARGV[15] == '1', tonumber(ARGV[16]), tonumber(ARGV[17])
local O_SPAN = tonumber(ARGV[18]) - O_LOW
math.randomseed(tonumber(ARGV[19]))
-- A timed-out service's events, told compactly on the row (the client rebuilds them; a burst's reply, and
-- the copy kept for a re-send, would otherwise carry some thirty strings a service): they are always
-- its timeout, its status change, and at most one follow-up (reconnecting, reconnect_failed or
-- service_flapping), read off the events just emitted: the new status, then the follow-up's kind and
-- its first three fields as name, value pairs ('' for none).
local function compact(row, from)
  local changed, follow = OUT[from + 2], OUT[from + 3] or {}
  row[5], row[6] = changed[10], follow[2] or ''
  for i = 7, 12 do row[i] = follow[i] or '' end
  return row
end
-- Onset.plan: mode, attempt, delay_us, max attempts of a due service with these details
local function first(auto, max)
  local limit = O_MAX
  if max ~= '' then limit = tonumber(max) end
  if not O_AUTO or auto == '0' then return 'error', '1', '0', '0' end
  if limit < 1 then return 'giveup', '1', '0', s(limit) end
  return 'retry', '1', s(O_LOW + math.floor(O_SPAN * math.random())), s(limit)
end
if fenced(owner) then return {'fenced'} end
local tick = redis.call('GET', K_TICK)
local rebased = 0
if (not tick) or NOW - tonumber(tick) > grace then
  -- Nobody watched for a while (outage, restart, failover): silence in that gap counts for nothing.
  -- Every service silent since before now gets a fresh deadline, a chunk per sweep (K_REBASE: since
  -- when, and the scan's cursor): one script over a large namespace would hold the server for
  -- seconds. Until its chunk comes, a service found due is given its fresh deadline instead.
  redis.call('SET', K_REBASE, s(NOW) .. ' 0')
  rebased = redis.call('ZCARD', K_DL)
end
redis.call('SET', K_TICK, s(NOW))
local since = nil
local rebase = redis.call('GET', K_REBASE)
if rebase then
  local at, cursor = string.match(rebase, '^(%d+) (%d+)$')
  since = tonumber(at)
  local scan = redis.call('ZSCAN', K_DL, cursor, 'COUNT', batch * 4)
  for i = 1, #scan[2], 2 do rebase_one(scan[2][i], since) end
  if scan[1] == '0' then redis.call('DEL', K_REBASE) else redis.call('SET', K_REBASE, at .. ' ' .. scan[1]) end
end
local due = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', K_DL, '-inf', s(NOW), 'LIMIT', 0, batch)) do
  if not (since and rebase_one(id, since)) then
    -- name, the transport's auto_reconnect and max_reconnect_attempts ('': unset): what the leader needs
    -- to plan, without a read per service
    local svc = cjson.decode(redis.call('HGET', K_SVC, id) or '{"name":""}')
    local transport = svc.transport or {}
    local max = transport.max_reconnect_attempts
    if type(max) ~= 'number' then max = '' else max = s(max) end
    local row = {id, svc.name, transport.auto_reconnect == false and '0' or '1', max}
    if redis.call('HGET', K_STATUS, id) == 'running' then
      -- its deadline (its last heartbeat plus its limit) passed: nothing to read again
      local from = #OUT
      emit('heartbeat_timeout', id)
      local mode, k, delay, most = first(row[3], max)
      begin_cycle(id, mode, k, delay, most, 'running')
      due[#due + 1] = compact(row, from)
    else
      redis.call('ZREM', K_DL, id)  -- only a RUNNING service has a deadline
    end
  end
end
local claimed = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', K_TODO, '-inf', s(NOW), 'LIMIT', 0, batch)) do
  local json = redis.call('HGET', K_SVC, id)
  local connect = json and tonumber((cjson.decode(json).transport or {}).timeout_secs) or 30
  redis.call('ZADD', K_TODO, s(NOW + math.floor(connect * 1000000) + tick_us), id)
  redis.call('HSET', K_CLAIM, id, owner)
  claimed[#claimed + 1] = {id, redis.call('HGET', K_ATT, id) or '0'}
end
local nxt = -1
local a = redis.call('ZRANGE', K_DL, 0, 0, 'WITHSCORES')
local b = redis.call('ZRANGE', K_TODO, 0, 0, 'WITHSCORES')
if a[2] then nxt = tonumber(a[2]) end
if b[2] and (nxt < 0 or tonumber(b[2]) < nxt) then nxt = tonumber(b[2]) end
if nxt >= 0 then nxt = math.max(0, nxt - NOW) end
if redis.call('EXISTS', K_REBASE) == 1 then nxt = 0 end  -- the leader sweeps again at once: more to rebase
return {'ok', due, claimed, s(nxt), rebased}
"""

# ARGV[11..]: id, owner, attempt, ok ('1'/'0'), plan mode, next attempt, delay_us, max
ATTEMPT_DONE = """
local id, owner = ARGV[11], ARGV[12]
-- A process-bound service's attempts are its owner's (claimed by OWN), lease or not.
local by_owner = holder_of(id) == owner
if fenced(owner) and not by_owner then return {'fenced'} end
local claimed
if by_owner then claimed = redis.call('HGET', K_OCLAIM, id) == ARGV[13]
else claimed = redis.call('HGET', K_CLAIM, id) == owner end
if redis.call('HGET', K_STATUS, id) ~= 'reconnecting' or not claimed or redis.call('HGET', K_ATT, id) ~= ARGV[13] then
  return {'stale'}
end
redis.call('HDEL', K_CLAIM, id)
if ARGV[14] == '1' then
  redis.call('HSET', K_LAST, id, s(NOW))
  set_status(id, 'running')
  emit('reconnected', id)
else
  plan(id, ARGV[15], ARGV[16], ARGV[17], ARGV[18])
end
return {'ok', OUT}
"""

# ARGV[11..]: id, owner, ttl_ms, tick_us, child (the owner's record of itself and its child, '' for none, '-' to
# keep what is recorded) -- take or renew ownership of a process-bound service; as its owner, claim the reconnect
# attempt that is due (or that the leader claimed) for the owner to run. A fresh grant answers the child an
# earlier owner recorded, so a new owner on its host can end a leftover before it spawns.
OWN = """
local id, owner, ttl, tick_us, child = ARGV[11], ARGV[12], tonumber(ARGV[13]), tonumber(ARGV[14]), ARGV[15] or '-'
local st = redis.call('HGET', K_STATUS, id)
if not st then return {'missing', '0', '0', '', '0', ''} end
local holder, till, epoch, had = ownership(id)
if holder ~= '' and holder ~= owner and till > NOW then return {'other', s(epoch), '0', st, '0', ''} end
if st == 'stopping' or st == 'stopped' then return {'stopping', s(epoch), '0', st, '0', ''} end
local fresh, before = '0', ''
if holder ~= owner or till <= NOW then
  epoch = epoch + 1
  fresh, before = '1', had
  had = ''
  redis.call('HDEL', K_OCLAIM, id)  -- an attempt an earlier owner began is run again by this one
  if st == 'running' then
    -- A take-over: the new owner spawns a child now, which gets a deadline from now, as a start does;
    -- the silence since the old child's last beat is no interval for the phi detector to learn.
    redis.call('HSET', K_LAST, id, s(NOW))
    redis.call('ZADD', K_DL, s(NOW + limit(id)), id)
  end
end
if child ~= '-' then had = child end
redis.call('HSET', K_OWN, id, owner .. '|' .. s(NOW + ttl * 1000) .. '|' .. s(epoch) .. '|' .. had)
local run = '0'
if st == 'reconnecting' then
  local att = redis.call('HGET', K_ATT, id) or '0'
  local due = redis.call('ZSCORE', K_TODO, id)
  if redis.call('HGET', K_OCLAIM, id) ~= att
     and ((due and tonumber(due) <= NOW) or redis.call('HEXISTS', K_CLAIM, id) == 1) then
    local json = redis.call('HGET', K_SVC, id)
    local connect = json and tonumber((cjson.decode(json).transport or {}).timeout_secs) or 30
    redis.call('HSET', K_OCLAIM, id, att)
    redis.call('HSET', K_CLAIM, id, owner)
    redis.call('ZADD', K_TODO, s(NOW + math.floor(connect * 1000000) + tick_us), id)
    run = att
  end
end
return {'owner', s(epoch), fresh, st, run, before}
"""

# ARGV[11..]: id, owner -- the epoch stays, so the next grant is newer; the log's entry (logged, not emitted: no
# signal) wakes the other candidates, which take over at once instead of at their next tick
DISOWN = """
local id = ARGV[11]
local holder, _, epoch = ownership(id)
if holder == ARGV[12] then
  redis.call('HSET', K_OWN, id, '|0|' .. s(epoch) .. '|')
  log({'type', 'ownership_released', 'id', id, 'ts', s(NOW)})
end
return {'ok'}
"""

# ARGV[11..]: id
OWNER_OF = """
return {holder_of(ARGV[11]) or ''}
"""

# ARGV[11..]: id
GET = """
local id = ARGV[11]
if redis.call('HEXISTS', K_STATUS, id) == 0 then return {'missing'} end
return {'ok', info(id)}
"""

# ARGV[11..]: id -- status and silence only (the manager's hot-path read)
SILENCE = """
local id = ARGV[11]
local st = redis.call('HGET', K_STATUS, id)
if not st then return {'missing'} end
local last = redis.call('HGET', K_LAST, id)
if not last then return {st, '-1'} end
return {st, s(math.max(0, NOW - tonumber(last)))}
"""

# ARGV[11..]: id, plan mode, attempt, delay_us, max -- restart on request: from RUNNING, RECONNECTING or ERROR
# (flapping or not) to RECONNECTING with a fresh restart window, any claim void, then the plan (attempt 1).
RESTART = """
local id = ARGV[11]
local st = redis.call('HGET', K_STATUS, id)
if not st then return {'missing'} end
if st ~= 'running' and st ~= 'reconnecting' and st ~= 'error' then return {st} end
redis.call('HDEL', K_RST, id)
redis.call('HDEL', K_FLAP, id)
redis.call('HDEL', K_CLAIM, id)
set_status(id, 'reconnecting')
plan(id, ARGV[12], ARGV[13], ARGV[14], ARGV[15])
return {st, OUT}
"""

# ARGV[11..]: id -- the phi detector's inputs: silence and the history's sums ('none' without one)
PHI_READ = """
local id = ARGV[11]
local sums = redis.call('HGET', K_PHI, id)
local last = redis.call('HGET', K_LAST, id)
if not sums or not last then return {'none'} end
local total, squares, n = struct.unpack('<ddd', sums)
local function g(x) return string.format('%.17g', x) end
return {'ok', s(math.max(0, NOW - tonumber(last))), g(total), g(squares), g(n)}
"""

# ARGV[11..]: id -- restarts within the window now
RESTARTS = """
return {'ok', #restart_times(ARGV[11])}
"""

# ARGV[11..]: id -- status, silence and the service's own timeout (TIMEOUT when it has none)
TIMING = """
local id = ARGV[11]
local st = redis.call('HGET', K_STATUS, id)
if not st then return {'missing'} end
local last = redis.call('HGET', K_LAST, id)
local silent = -1
if last then silent = math.max(0, NOW - tonumber(last)) end
return {st, s(silent), s(tmo(id))}
"""

# ARGV[11..]: status to keep ('' for all)
LIST = """
local out = {}
local only = ARGV[11]
for _, id in ipairs(redis.call('HKEYS', K_STATUS)) do
  if only == '' or redis.call('HGET', K_STATUS, id) == only then out[#out + 1] = info(id) end
end
return {'ok', out}
"""

STATS = """
local counts = {}
for _, st in ipairs(redis.call('HVALS', K_STATUS)) do counts[st] = (counts[st] or 0) + 1 end
local out = {}
for st, n in pairs(counts) do out[#out + 1] = st; out[#out + 1] = n end
return {'ok', out}
"""

# ARGV[11..]: target status -- the registry's own sweep (RegistryService.health_check)
HEALTH_CHECK = """
local stale = {}
for _, id in ipairs(redis.call('HKEYS', K_STATUS)) do
  if redis.call('HGET', K_STATUS, id) == 'running' then
    local last = redis.call('HGET', K_LAST, id)
    if (not last) or NOW - tonumber(last) >= tmo(id) then stale[#stale + 1] = id end
  end
end
for _, id in ipairs(stale) do set_status(id, ARGV[11]) end
return {'ok', stale, OUT}
"""

# UNLINK: a namespace of a million services is hashes of 100,000s of fields; the server frees them
# in the background instead of holding every other client (and, on a cluster, its failure detector).
CLEAR = """
for _, k in ipairs(KEYS) do redis.call('UNLINK', k) end
return {'ok'}
"""

# redis-py re-sends a command whose reply was lost (a broken connection, a socket timeout), so a
# script may run twice. These scripts are not idempotent by themselves (a second REGISTER finds
# its own service and refuses it, a second BEGIN_STOP finds STOPPING, a second SWEEP finds its own
# claims): the caller declares a key of the call's own, `op:<operation id>`, as the last KEY, and a
# repeat gets the first reply, kept for `OP_KEEP_MS`. HEARTBEAT, BEAT_MANY, LEASE and RELEASE are idempotent
# and skip the bookkeeping.
ONCE = frozenset({"REGISTER", "RESTORE", "UNREGISTER", "ACTIVATE", "SET_STATUS", "REPORT_ERROR", "BEGIN_STOP",
                  "EXPIRE", "SWEEP", "ATTEMPT_DONE", "HEALTH_CHECK", "RESTART"})

OP_KEEP_MS = 60_000

# The operation's own key (`op:<id>`, declared last) holds its reply for a minute and expires on
# its own, so a burst of calls leaves nothing behind to prune.
_ONCE_HEAD = """
local K_OP = KEYS[#KEYS]
local kept = redis.call('GET', K_OP)
if kept then return cjson.decode(kept) end
local function body()
"""

_ONCE_TAIL = f"""
end
local reply = body()
redis.call('SET', K_OP, cjson.encode(reply), 'PX', {OP_KEEP_MS})
return reply
"""


def _split(prelude: str) -> tuple[str, list[tuple[str, str]]]:
    """The prelude's head (everything before its first function) and its functions, (name, text), in order."""
    parts = re.split(r"(?m)^(?=local function )", prelude)
    functions = [(re.match(r"local function (\w+)", part).group(1), part) for part in parts[1:]]  # type: ignore[union-attr]
    return parts[0], functions


_HEAD, _FUNCTIONS = _split(PRELUDE)

SHORT = frozenset({"HEARTBEAT", "BEAT_MANY"})
"""The fixed detector's heartbeat scripts: the hot path gets only the head's first `SHORT_HEAD` items, its
own arguments from ``ARGV[4]`` (seven fewer arguments to encode and send on every beat)."""
SHORT_HEAD = 3

# The head without items 4 to 10 (restart intensity, the phi detector's settings), which a SHORT
# script is not sent; `source` refuses a SHORT script whose prelude would read them.
_SHORT_HEAD = re.sub(r"local MAX_RESTARTS.*?\nend\n", "", _HEAD, flags=re.S)
_LONG_ONLY = re.compile(r"\b(MAX_RESTARTS|WINDOW|PHI|PHI_SCORE|PHI_MAX|PHI_MIN_STD|PHI_PAUSE|PHI_FIRST)\b")


def _calls(name: str, text: str) -> bool:
    code = re.sub(r"--[^\n]*", "", text)  # a call named in a comment is no call
    return re.search(rf"(?<![\w.]){name}\s*\(", code) is not None


def prelude_for(body: str, *, short: bool = False) -> str:
    """The prelude with only the functions `body` calls, directly or through them (`short`: the short head).

    Every `local function` costs each call its closure (about 0.2 us): a script that defined all
    of them would pay about 4 us whatever it does, twice the heartbeat's own work.
    """
    needed: set[str] = set()
    text = body
    while True:
        more = {fn for fn, _ in _FUNCTIONS if fn not in needed and _calls(fn, text)}
        if not more:
            break
        needed |= more
        text = body + "".join(part for fn, part in _FUNCTIONS if fn in needed)
    functions = "".join(part for fn, part in _FUNCTIONS if fn in needed)
    if short and _LONG_ONLY.search(re.sub(r"--[^\n]*", "", functions + body)):
        raise ValueError("a SHORT script reads a head item it is not sent")
    return (_SHORT_HEAD if short else _HEAD) + functions


def source(name: str) -> str:
    """The full text of script `name`: its key bindings, the prelude it needs, its body, and the repeat guard if any."""
    declared = keys_for(name)
    bindings = "".join(
        f"local {lua} = KEYS[{declared.index(key) + 1}]\n" if key in declared else f"local {lua} = nil\n"
        for key, lua in _LUA_NAMES.items()
    )
    body: str = globals()[name]
    body = _ONCE_HEAD + body + _ONCE_TAIL if name in ONCE else body
    return bindings + prelude_for(body, short=name in SHORT) + body
