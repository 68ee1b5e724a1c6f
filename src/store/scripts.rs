//! The Lua scripts behind every atomic step of the store. Each one runs whole or not at all on
//! the Redis server, which is what makes "claimed" and "leased", or "published" and "done",
//! inseparable. All keys share one hash tag, so they also run on Redis Cluster; the per-slot
//! `owned` sets and the queues are named from the prefix inside the scripts, for the same tag.
//!
//! Lease value format: `<slot>|<path>` where path is `tip`, `priority` or `backlog`.

/// Drops a block's lease wherever it is recorded. Expects `LEASE`, `DEADLINE` and `PREFIX`.
const RELEASE_LEASE: &str = r#"
local function release_lease(b)
  local v = redis.call('HGET', LEASE, b)
  if v then
    local owner = string.match(v, '^([^|]*)')
    redis.call('SREM', PREFIX .. ':owned:' .. owner, b)
    redis.call('HDEL', LEASE, b)
  end
  redis.call('ZREM', DEADLINE, b)
  return v
end
local function origin_queue(v)
  if v and string.match(v, '|backlog$') then return 'backlog' end
  return 'priority'
end
-- Drops the lease and puts the block back on the queue it came from, unless it is done.
local function return_to_queue(b)
  local v = release_lease(b)
  if v and redis.call('GETBIT', PREFIX .. ':done', b) == 0 then
    redis.call('ZADD', PREFIX .. ':queue:' .. origin_queue(v), b, b)
  end
  return v
end
"#;

/// KEYS: last_synced, lease, deadline, done. ARGV: prefix, expected ('' = none), head,
/// deadline, tip slot. Returns {1, head} or {0, current}.
const ADVANCE: &str = r#"
local cur = redis.call('GET', KEYS[1])
if (cur or '') ~= ARGV[2] then return {0, cur or ''} end
local head = ARGV[3]
if redis.call('GETBIT', KEYS[4], head) == 0 then
  redis.call('HSET', KEYS[2], head, ARGV[5] .. '|tip')
  redis.call('ZADD', KEYS[3], ARGV[4], head)
  redis.call('SADD', ARGV[1] .. ':owned:' .. ARGV[5], head)
end
redis.call('SET', KEYS[1], head)
return {1, head}
"#;

/// KEYS: queue, done, lease, deadline, owned(slot). ARGV: max, deadline, slot, path,
/// 'max'|'min'. Returns the claimed blocks in claim order.
const CLAIM: &str = r#"
local out = {}
local max = tonumber(ARGV[1])
local popped_total = 0
-- done blocks are dropped as they are popped; bound the work one call may do
while #out < max and popped_total < max * 20 do
  local popped
  if ARGV[5] == 'max' then popped = redis.call('ZPOPMAX', KEYS[1]) else popped = redis.call('ZPOPMIN', KEYS[1]) end
  if #popped == 0 then break end
  popped_total = popped_total + 1
  local b = popped[1]
  if redis.call('GETBIT', KEYS[2], b) == 0 then
    redis.call('HSET', KEYS[3], b, ARGV[3] .. '|' .. ARGV[4])
    redis.call('ZADD', KEYS[4], ARGV[2], b)
    redis.call('SADD', KEYS[5], b)
    out[#out + 1] = b
  end
end
return out
"#;

/// KEYS: done, stream, lease, deadline, attempts, retry, retry_path, stats.
/// ARGV: block, prefix, path, minid, block time, event count, then per event: 2*fields, f1, v1...
/// Returns {events added, failed attempts before this one}, or {-1, 0} when already done.
const COMMIT: &str = r#"
local b = ARGV[1]
local prior = tonumber(redis.call('HGET', KEYS[5], b) or '0')
local function forget_retries()
  redis.call('HDEL', KEYS[5], b)
  redis.call('ZREM', KEYS[6], b)
  redis.call('HDEL', KEYS[7], b)
end
if redis.call('GETBIT', KEYS[1], b) == 1 then
  release_lease(b)
  forget_retries()
  return {-1, 0}
end
local n = tonumber(ARGV[6])
local i = 7
for e = 1, n do
  local count = tonumber(ARGV[i])
  redis.call('XADD', KEYS[2], '*', unpack(ARGV, i + 1, i + count))
  i = i + count + 1
end
redis.call('SETBIT', KEYS[1], b, 1)
if n > 0 then redis.call('XTRIM', KEYS[2], 'MINID', '~', ARGV[4]) end
release_lease(b)
forget_retries()
redis.call('HINCRBY', KEYS[8], 'blocks:' .. ARGV[3], 1)
redis.call('HINCRBY', KEYS[8], 'events:' .. ARGV[3], n)
-- The newest block time published, for the lag in seconds.
if tonumber(redis.call('HGET', KEYS[8], 'last_block_time') or '0') < tonumber(ARGV[5]) then
  redis.call('HSET', KEYS[8], 'last_block_time', ARGV[5])
end
return {n, prior}
"#;

/// KEYS: done, attempts, retry, retry_path, dead. ARGV: block, prefix, error, now, delays...
/// Returns {'retry', attempt, due} | {'dead', attempts, 0} | {'done', 0, 0}.
const FAIL: &str = r#"
local b = ARGV[1]
local v = release_lease(b)
if redis.call('GETBIT', KEYS[1], b) == 1 then return {'done', 0, 0} end
local path = origin_queue(v)
local attempt = redis.call('HINCRBY', KEYS[2], b, 1)
local delays = #ARGV - 4
if attempt <= delays then
  local due = tonumber(ARGV[4]) + tonumber(ARGV[4 + attempt])
  redis.call('ZADD', KEYS[3], due, b)
  redis.call('HSET', KEYS[4], b, path)
  return {'retry', attempt, due}
end
redis.call('HDEL', KEYS[2], b)
redis.call('ZREM', KEYS[3], b)
redis.call('HDEL', KEYS[4], b)
redis.call('HSET', KEYS[5], b, cjson.encode({block = tonumber(b), attempts = attempt,
  error = ARGV[3], at_ms = tonumber(ARGV[4]), path = path}))
return {'dead', attempt, 0}
"#;

/// KEYS: owned(slot), lease, deadline. ARGV: slot, deadline. Returns how many were extended.
const HEARTBEAT: &str = r#"
local n = 0
for _, b in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local v = redis.call('HGET', KEYS[2], b)
  if v and string.match(v, '^([^|]*)') == ARGV[1] then
    redis.call('ZADD', KEYS[3], ARGV[2], b)
    n = n + 1
  else
    redis.call('SREM', KEYS[1], b)
  end
end
return n
"#;

/// KEYS: owned(slot), lease. ARGV: slot. Returns {block, path, block, path, ...}.
const OWNED: &str = r#"
local out = {}
for _, b in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local v = redis.call('HGET', KEYS[2], b)
  if v and string.match(v, '^([^|]*)') == ARGV[1] then
    out[#out + 1] = b
    out[#out + 1] = string.match(v, '|(.*)$')
  end
end
return out
"#;

/// KEYS: done, lease. ARGV: prefix, slot, then blocks. The slot's leases on these blocks go back
/// to their queues. Returns how many.
const RELEASE: &str = r#"
local n = 0
for i = 3, #ARGV do
  local v = redis.call('HGET', LEASE, ARGV[i])
  if v and string.match(v, '^([^|]*)') == ARGV[2] then
    return_to_queue(ARGV[i])
    n = n + 1
  end
end
return n
"#;

/// KEYS: deadline, done, lease. ARGV: prefix, now, limit. Expired leases go back to their
/// queues. Returns how many.
const REAP: &str = r#"
local expired = redis.call('ZRANGEBYSCORE', DEADLINE, '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
for _, b in ipairs(expired) do
  if not return_to_queue(b) then redis.call('ZREM', DEADLINE, b) end
end
return #expired
"#;

/// KEYS: retry, retry_path. ARGV: now, prefix, limit. Returns how many were promoted.
const PROMOTE: &str = r#"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, b in ipairs(due) do
  local path = redis.call('HGET', KEYS[2], b) or 'priority'
  redis.call('ZADD', ARGV[2] .. ':queue:' .. path, b, b)
  redis.call('ZREM', KEYS[1], b)
  redis.call('HDEL', KEYS[2], b)
end
return #due
"#;

/// KEYS: dead, attempts. ARGV: prefix, 'requeue'|'purge', then blocks (none = all).
/// Requeued blocks go back to the queue they came from with a fresh retry schedule.
/// Returns the blocks acted on.
const DEAD_LETTERS: &str = r#"
local blocks = {}
if #ARGV > 2 then
  for i = 3, #ARGV do blocks[#blocks + 1] = ARGV[i] end
else
  blocks = redis.call('HKEYS', KEYS[1])
end
local out = {}
for _, b in ipairs(blocks) do
  local record = redis.call('HGET', KEYS[1], b)
  if record then
    if ARGV[2] == 'requeue' then
      local path = cjson.decode(record)['path']
      if path ~= 'backlog' then path = 'priority' end
      redis.call('ZADD', ARGV[1] .. ':queue:' .. path, b, b)
    end
    redis.call('HDEL', KEYS[1], b)
    redis.call('HDEL', KEYS[2], b)
    out[#out + 1] = b
  end
end
return out
"#;

/// Builds a script whose body may use `release_lease`: `LEASE`, `DEADLINE` and `PREFIX` are bound
/// from the keys `<prefix>:lease`, `<prefix>:lease_deadline` and the prefix passed as
/// `ARGV[prefix_arg]`.
fn with_lease_helpers(prefix_arg: usize, body: &str) -> String {
    format!(
        "local PREFIX = ARGV[{prefix_arg}]\nlocal LEASE = PREFIX .. ':lease'\nlocal DEADLINE = PREFIX .. ':lease_deadline'\n{RELEASE_LEASE}\n{body}"
    )
}

/// The compiled scripts (their SHA1 is computed once).
pub(crate) struct Scripts {
    pub advance: redis::Script,
    pub claim: redis::Script,
    pub commit: redis::Script,
    pub fail: redis::Script,
    pub heartbeat: redis::Script,
    pub owned: redis::Script,
    pub release: redis::Script,
    pub reap: redis::Script,
    pub promote: redis::Script,
    pub dead_letters: redis::Script,
}

impl Scripts {
    pub fn new() -> Self {
        Scripts {
            advance: redis::Script::new(ADVANCE),
            claim: redis::Script::new(CLAIM),
            commit: redis::Script::new(&with_lease_helpers(2, COMMIT)),
            fail: redis::Script::new(&with_lease_helpers(2, FAIL)),
            heartbeat: redis::Script::new(HEARTBEAT),
            owned: redis::Script::new(OWNED),
            release: redis::Script::new(&with_lease_helpers(1, RELEASE)),
            reap: redis::Script::new(&with_lease_helpers(1, REAP)),
            promote: redis::Script::new(PROMOTE),
            dead_letters: redis::Script::new(DEAD_LETTERS),
        }
    }
}
