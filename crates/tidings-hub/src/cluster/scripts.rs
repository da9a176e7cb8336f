//! The Lua scripts the node runs in Redis (`broker`): each is one atomic step.

/// Publish batches, one or more (concurrent publishes share one call: see `commit`). Each
/// batch is written atomically and its events are consecutive in the log. With an
/// idempotency key, a key already used answers with what it published.
///
/// KEYS: the log, then one idempotency key per batch ('' for none). ARGV: the stream's
/// MAXLEN ('0': none), the number of batches, then per batch: its origin, the fingerprint,
/// the key's window (ms), its event count and its events. Returns, per batch, 1 and the new
/// ids joined by ',', or 0 and the key's record (`fingerprint|ids`).
pub(super) const PUBLISH: &str = r"
local maxlen = ARGV[1]
local out = {}
local a = 3
for b = 1, tonumber(ARGV[2]) do
  local key = KEYS[b + 1]
  local origin, fingerprint, window, count = ARGV[a], ARGV[a + 1], ARGV[a + 2], tonumber(ARGV[a + 3])
  a = a + 4
  local prior = false
  if key ~= '' then prior = redis.call('GET', key) end
  if prior then
    out[#out + 1] = 0
    out[#out + 1] = prior
  else
    local ids = {}
    for i = a, a + count - 1 do
      if maxlen == '0' then
        ids[#ids + 1] = redis.call('XADD', KEYS[1], '*', 'o', origin, 'e', ARGV[i])
      else
        ids[#ids + 1] = redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', 'o', origin, 'e', ARGV[i])
      end
    end
    local joined = table.concat(ids, ',')
    if key ~= '' then
      redis.call('SET', key, fingerprint .. '|' .. joined, 'PX', window)
    end
    out[#out + 1] = 1
    out[#out + 1] = joined
  end
  a = a + count
end
return out
";

/// The log lost data: the first node to notice writes one gap marker and a new epoch; the
/// others find the epoch changed and adopt it. Returns the epoch in force.
pub(super) const MARK_GAP: &str = r"
local current = redis.call('GET', KEYS[1])
if (current == false and ARGV[1] ~= '') or current == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2])
  redis.call('XADD', KEYS[2], '*', 'gap', ARGV[2])
  return ARGV[2]
end
if current == false then
  redis.call('SET', KEYS[1], ARGV[2])
  return ARGV[2]
end
return current
";

/// Takes a connection slot for a user if the live nodes' counts leave room. KEYS: the
/// user's hash, the live-node set. ARGV: this node, the limit.
pub(super) const ACQUIRE: &str = r"
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local counts = redis.call('HGETALL', KEYS[1])
local total = 0
for i = 1, #counts, 2 do
  local node, n = counts[i], tonumber(counts[i + 1])
  local lease = redis.call('ZSCORE', KEYS[2], node)
  if node == ARGV[1] or (lease and tonumber(lease) > now_ms) then
    total = total + n
  else
    redis.call('HDEL', KEYS[1], node)
  end
end
if total >= tonumber(ARGV[2]) then return 0 end
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
return 1
";

/// Gives a slot back. KEYS: the user's hash. ARGV: this node.
pub(super) const RELEASE: &str = r"
local n = redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
if n <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
return n
";

/// Renews this node's lease and snapshot; returns every live node's snapshot. KEYS: the
/// live-node set, this node's snapshot key. ARGV: this node, lease ms, snapshot, prefix.
pub(super) const HEARTBEAT: &str = r"
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZADD', KEYS[1], now_ms + tonumber(ARGV[2]), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[2])
local live = redis.call('ZRANGE', KEYS[1], 0, -1)
local out = {}
for _, node in ipairs(live) do
  if node ~= ARGV[1] then
    local snap = redis.call('GET', ARGV[4] .. ':node:' .. node)
    if snap then out[#out + 1] = snap end
  end
end
return out
";
