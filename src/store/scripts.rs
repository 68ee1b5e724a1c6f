//! The Lua scripts behind every atomic step of the store. Each one runs whole or not at all on
//! the Redis server, which is what makes "claimed" and "leased", or "published" and "done",
//! inseparable.
//!
//! No script builds a key name: each lists the [`Key`]s it touches, Rust passes them in KEYS in
//! that order, and a generated prelude binds each to a Lua local ([`Key::lua_name`]). So every
//! key a script touches is declared, as Redis Cluster requires (they share one hash tag), and a
//! unit test below checks that each `redis.call` names a key the script was given. The few facts
//! both languages need are Lua helpers of the prelude, each the twin of one Rust definition:
//! the lease value (`LeaseValue`) and the queue a block goes back to (`Origin::queue`).

use super::schema::{Key, Keys};
use Key::*;

/// Always in the prelude: the lease value and the origin -> queue rule, which touch no key.
const LEASE_VALUE: &str = r#"
-- A lease's value is slot|origin (LeaseValue in schema.rs is its twin).
local function lease_value(slot, origin) return slot .. '|' .. origin end
local function lease_slot(v) return string.match(v, '^([^|]*)') end
local function lease_origin(v) return string.match(v, '|(.*)$') end
-- The name of the queue a block of this origin goes back to ('priority' without one): the
-- twin of Origin::queue in actors/src/store.rs, which tests/store_schema.rs checks it against.
local function queue_of(origin)
  if origin == 'backlog' then return 'backlog' end
  return 'priority'
end
"#;

/// Always in the prelude: a block's link as stored in LINKS, which touches no key.
const LINK_MEMBER: &str = r#"
-- A link's member is number|hash|parent_hash (LinkMember in schema.rs is its twin).
local function link_member(b, hash, parent) return b .. '|' .. hash .. '|' .. parent end
local function link_hash(m) return string.match(m, '^[^|]*|([^|]*)|') end
local function link_parent(m) return string.match(m, '^[^|]*|[^|]*|(.*)$') end
"#;

/// A prelude helper that touches keys: included in the scripts given all of `keys`.
struct Helper {
    keys: &'static [Key],
    source: &'static str,
}

const HELPERS: &[Helper] = &[
    Helper {
        keys: &[Key::Leader],
        source: r#"
-- Whether a step fenced by term ('' = not fenced) must be refused: the term no longer leads
-- (TermValue in schema.rs is the term's twin).
local function fenced_out(term)
  return term ~= '' and redis.call('GET', LEADER) ~= term
end
"#,
    },
    Helper {
        keys: &[Key::Links],
        source: r#"
-- The stored link of block n (its member), or nil.
local function link_at(n)
  return redis.call('ZRANGEBYSCORE', LINKS, n, n)[1]
end
"#,
    },
    Helper {
        keys: &[Key::PriorityQueue, Key::BacklogQueue],
        source: r#"
local function queue_key(origin)
  if queue_of(origin) == 'backlog' then return BACKLOG_QUEUE end
  return PRIORITY_QUEUE
end
"#,
    },
    Helper {
        keys: &[Key::Lease, Key::LeaseDeadline],
        source: r#"
-- Drops a block's lease; returns its value (false when there was none).
local function release_lease(b)
  local v = redis.call('HGET', LEASE, b)
  if v then redis.call('HDEL', LEASE, b) end
  redis.call('ZREM', DEADLINE, b)
  return v
end
"#,
    },
    Helper {
        keys: &[
            Key::Lease,
            Key::LeaseDeadline,
            Key::Done,
            Key::PriorityQueue,
            Key::BacklogQueue,
        ],
        source: r#"
-- Drops the lease and puts the block back on the queue it came from, unless it is done.
local function return_to_queue(b)
  local v = release_lease(b)
  if v and redis.call('GETBIT', DONE, b) == 0 then
    redis.call('ZADD', queue_key(lease_origin(v)), b, b)
  end
  return v
end
"#,
    },
];

/// ARGV: expected ('' = none), head, deadline, tip slot, tip origin, term ('' = not fenced).
/// Returns {1, head}, {0, current} or {-3, ''} when the term no longer leads.
const ADVANCE: &str = r#"
if fenced_out(ARGV[6]) then return {-3, ''} end
local cur = redis.call('GET', LAST_SYNCED)
if (cur or '') ~= ARGV[1] then return {0, cur or ''} end
local head = ARGV[2]
if redis.call('GETBIT', DONE, head) == 0 then
  redis.call('HSET', LEASE, head, lease_value(ARGV[4], ARGV[5]))
  redis.call('ZADD', DEADLINE, ARGV[3], head)
end
redis.call('SET', LAST_SYNCED, head)
return {1, head}
"#;

/// ARGV: max, deadline, slot, origin of the queue claimed from, 'max'|'min'. Returns the
/// claimed blocks in claim order.
const CLAIM: &str = r#"
local out = {}
local max = tonumber(ARGV[1])
local popped_total = 0
-- done blocks are dropped as they are popped; bound the work one call may do
while #out < max and popped_total < max * 20 do
  local popped
  if ARGV[5] == 'max' then
    popped = redis.call('ZPOPMAX', queue_key(ARGV[4]))
  else
    popped = redis.call('ZPOPMIN', queue_key(ARGV[4]))
  end
  if #popped == 0 then break end
  popped_total = popped_total + 1
  local b = popped[1]
  if redis.call('GETBIT', DONE, b) == 0 then
    redis.call('HSET', LEASE, b, lease_value(ARGV[3], ARGV[4]))
    redis.call('ZADD', DEADLINE, ARGV[2], b)
    out[#out + 1] = b
  end
end
return out
"#;

/// ARGV: block, minid, block time, hash, parent hash, then the stats fields to count up (blocks,
/// events, last block time), the term ('' = not fenced), the committing instance's stats field
/// ('' = none), event count, then per event and then for the block entry: 2*fields, f1, v1...
/// Returns {events added, failed attempts before this one}, {-1, 0} when already done,
/// {-2, at} when the block does not link to the committed block `at`, or {-3, 0} when the term
/// no longer leads (both: nothing written, the lease and the retry state kept): the twin of
/// `FakeStore::commit_by`.
const COMMIT: &str = r#"
if fenced_out(ARGV[9]) then return {-3, 0} end
local b = ARGV[1]
local number = tonumber(b)
local hash, parent = ARGV[4], ARGV[5]
local done = redis.call('GETBIT', DONE, b) == 1
if done then
  local own = link_at(number)
  if own and link_hash(own) ~= hash then return {-2, number} end
else
  if number > 0 then
    local before = link_at(number - 1)
    if before and link_hash(before) ~= parent then return {-2, number - 1} end
  end
  local after = link_at(number + 1)
  if after and link_parent(after) ~= hash then return {-2, number + 1} end
end
local prior = tonumber(redis.call('HGET', ATTEMPTS, b) or '0')
release_lease(b)
redis.call('HDEL', ATTEMPTS, b)
redis.call('ZREM', RETRY, b)
redis.call('HDEL', RETRY_PATH, b)
if done then return {-1, 0} end
local n = tonumber(ARGV[11])
local i = 12
-- n events, then the block entry that ends them
for e = 1, n + 1 do
  local count = tonumber(ARGV[i])
  redis.call('XADD', EVENTS, '*', unpack(ARGV, i + 1, i + count))
  i = i + count + 1
end
redis.call('SETBIT', DONE, b, 1)
-- Below the finalized block a block can no longer be replaced: no link to check it by.
local finalized = redis.call('GET', FINALIZED)
if not finalized or number > tonumber(finalized) then
  redis.call('ZREMRANGEBYSCORE', LINKS, number, number)
  redis.call('ZADD', LINKS, number, link_member(b, hash, parent))
end
redis.call('XTRIM', EVENTS, 'MINID', '~', ARGV[2])
redis.call('HINCRBY', STATS, ARGV[6], 1)
redis.call('HINCRBY', STATS, ARGV[7], n)
if ARGV[10] ~= '' then redis.call('HINCRBY', STATS, ARGV[10], 1) end
-- The newest block time published, for the lag in seconds.
if tonumber(redis.call('HGET', STATS, ARGV[8]) or '0') < tonumber(ARGV[3]) then
  redis.call('HSET', STATS, ARGV[8], ARGV[3])
end
return {n, prior}
"#;

/// ARGV: minid, the stats fields to count up (reverted blocks, forks), the term ('' = not
/// fenced), then per orphan, newest first: block, hash, 2*fields, f1, v1... of its
/// `block_reverted` entry.
/// Returns the blocks retracted, in the order given, or {-3} when the term no longer leads: the
/// twin of `FakeStore::revert_in`.
const REVERT: &str = r#"
if fenced_out(ARGV[4]) then return {-3} end
local finalized = tonumber(redis.call('GET', FINALIZED) or '-1')
local out = {}
local i = 5
while i <= #ARGV do
  local b, hash, count = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local number = tonumber(b)
  local stored = link_at(number)
  -- A final block is never retracted, and a block committed in another version than the one
  -- named is not this orphan (someone retracted it already, or committed the canonical one).
  if number > finalized and stored and link_hash(stored) == hash then
    redis.call('XADD', EVENTS, '*', unpack(ARGV, i + 3, i + 2 + count))
    redis.call('SETBIT', DONE, b, 0)
    redis.call('ZREM', LINKS, stored)
    redis.call('ZADD', PRIORITY_QUEUE, number, b)
    out[#out + 1] = number
  end
  i = i + 3 + count
end
if #out > 0 then
  redis.call('XTRIM', EVENTS, 'MINID', '~', ARGV[1])
  redis.call('HINCRBY', STATS, ARGV[2], #out)
  redis.call('HINCRBY', STATS, ARGV[3], 1)
end
return out
"#;

/// ARGV: block, minid, the term ('' = not fenced), then 2*fields, f1, v1... of its `finalized`
/// entry. Returns 1 when the finalized block moved, 0 when it was already there or beyond, -3
/// when the term no longer leads: the twin of `FakeStore::finalize_in`.
const FINALIZE: &str = r#"
if fenced_out(ARGV[3]) then return -3 end
local number = tonumber(ARGV[1])
local current = redis.call('GET', FINALIZED)
if current and tonumber(current) >= number then return 0 end
redis.call('XADD', EVENTS, '*', unpack(ARGV, 5, 4 + tonumber(ARGV[4])))
redis.call('SET', FINALIZED, ARGV[1])
redis.call('ZREMRANGEBYSCORE', LINKS, '-inf', '(' .. ARGV[1])
redis.call('XTRIM', EVENTS, 'MINID', '~', ARGV[2])
return 1
"#;

/// ARGV: instance, held epoch ('' = none), ttl ms, now ms. The leadership is the LEADER key,
/// `<instance>|<epoch>`, expiring after ttl unless renewed. Renewed when held by this instance in
/// the held epoch; taken, with the next epoch, when free or held by this instance id without a
/// held epoch (its previous process); else left alone. Also records the instance as seen now.
/// Returns {1, instance, epoch, ttl} when the bidder leads, {0, leader, epoch, pttl} otherwise:
/// the twin of `FakeStore::lead`.
const LEAD: &str = r#"
redis.call('HSET', INSTANCES, ARGV[1], ARGV[4])
local cur = redis.call('GET', LEADER)
if cur then
  local who, epoch = string.match(cur, '^(.*)|(%d+)$')
  if who == ARGV[1] and epoch == ARGV[2] then
    redis.call('PEXPIRE', LEADER, ARGV[3])
    return {1, who, tonumber(epoch), tonumber(ARGV[3])}
  end
  if not (who == ARGV[1] and ARGV[2] == '') then
    return {0, who or '', tonumber(epoch or '0'), redis.call('PTTL', LEADER)}
  end
end
local epoch = redis.call('INCR', EPOCH)
redis.call('SET', LEADER, ARGV[1] .. '|' .. epoch, 'PX', ARGV[3])
return {1, ARGV[1], epoch, tonumber(ARGV[3])}
"#;

/// ARGV: term ('' = none), instance. Gives the leadership up if the term still holds it and
/// removes the instance from the registry: the twin of `FakeStore::resign`.
const RESIGN: &str = r#"
if ARGV[1] ~= '' and redis.call('GET', LEADER) == ARGV[1] then redis.call('DEL', LEADER) end
redis.call('HDEL', INSTANCES, ARGV[2])
return 1
"#;

/// ARGV: block, error, now, delays...
/// Returns {'retry', attempt, due} | {'dead', attempts, 0} | {'done', 0, 0}.
const FAIL: &str = r#"
local b = ARGV[1]
local v = release_lease(b)
if redis.call('GETBIT', DONE, b) == 1 then return {'done', 0, 0} end
local path = queue_of(v and lease_origin(v))
local attempt = redis.call('HINCRBY', ATTEMPTS, b, 1)
local delays = #ARGV - 3
if attempt <= delays then
  local due = tonumber(ARGV[3]) + tonumber(ARGV[3 + attempt])
  redis.call('ZADD', RETRY, due, b)
  redis.call('HSET', RETRY_PATH, b, path)
  return {'retry', attempt, due}
end
redis.call('HDEL', ATTEMPTS, b)
redis.call('ZREM', RETRY, b)
redis.call('HDEL', RETRY_PATH, b)
redis.call('HSET', DEAD, b, cjson.encode({block = tonumber(b), attempts = attempt,
  error = ARGV[2], at_ms = tonumber(ARGV[3]), path = path}))
return {'dead', attempt, 0}
"#;

/// ARGV: slot, deadline. Extends the slot's leases; returns how many. The lease hash holds one
/// entry per block in flight (a few hundred), so reading it whole is cheap.
const HEARTBEAT: &str = r#"
local n = 0
local leases = redis.call('HGETALL', LEASE)
for i = 1, #leases, 2 do
  if lease_slot(leases[i + 1]) == ARGV[1] then
    redis.call('ZADD', DEADLINE, ARGV[2], leases[i])
    n = n + 1
  end
end
return n
"#;

/// ARGV: slot, then blocks. The slot's leases on these blocks go back to their queues.
/// Returns how many.
const RELEASE: &str = r#"
local n = 0
for i = 2, #ARGV do
  local v = redis.call('HGET', LEASE, ARGV[i])
  if v and lease_slot(v) == ARGV[1] then
    return_to_queue(ARGV[i])
    n = n + 1
  end
end
return n
"#;

/// ARGV: now, limit. Expired leases go back to their queues. Returns how many.
const REAP: &str = r#"
local expired = redis.call('ZRANGEBYSCORE', DEADLINE, '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, b in ipairs(expired) do
  if not return_to_queue(b) then redis.call('ZREM', DEADLINE, b) end
end
return #expired
"#;

/// ARGV: now, limit. Returns how many were promoted.
const PROMOTE: &str = r#"
local due = redis.call('ZRANGEBYSCORE', RETRY, '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, b in ipairs(due) do
  redis.call('ZADD', queue_key(redis.call('HGET', RETRY_PATH, b)), b, b)
  redis.call('ZREM', RETRY, b)
  redis.call('HDEL', RETRY_PATH, b)
end
return #due
"#;

/// ARGV: 'requeue'|'purge', then blocks (none = all).
/// Requeued blocks go back to the queue they came from with a fresh retry schedule.
/// Returns the blocks acted on.
const DEAD_LETTERS: &str = r#"
local blocks = {}
if #ARGV > 1 then
  for i = 2, #ARGV do blocks[#blocks + 1] = ARGV[i] end
else
  blocks = redis.call('HKEYS', DEAD)
end
local out = {}
for _, b in ipairs(blocks) do
  local record = redis.call('HGET', DEAD, b)
  if record then
    if ARGV[1] == 'requeue' then
      redis.call('ZADD', queue_key(cjson.decode(record)['path']), b, b)
    end
    redis.call('HDEL', DEAD, b)
    redis.call('HDEL', ATTEMPTS, b)
    out[#out + 1] = b
  end
end
return out
"#;

/// A script and the keys it is given, in KEYS order.
pub(crate) struct StoreScript {
    keys: &'static [Key],
    script: redis::Script,
}

impl StoreScript {
    fn new(keys: &'static [Key], body: &str) -> Self {
        StoreScript {
            keys,
            script: redis::Script::new(&source(keys, body)),
        }
    }

    /// The script's key names, in KEYS order.
    pub(crate) fn key_names(&self, keys: &Keys) -> Vec<String> {
        self.keys.iter().map(|key| keys.of(*key)).collect()
    }

    /// An invocation with every key already given; the caller adds ARGV.
    pub(crate) fn invocation(&self, keys: &Keys) -> redis::ScriptInvocation<'_> {
        let mut invocation = self.script.prepare_invoke();
        for name in self.key_names(keys) {
            invocation.key(name);
        }
        invocation
    }

    /// The script's SHA1, for a hand-built EVALSHA.
    pub(crate) fn hash(&self) -> &str {
        self.script.get_hash()
    }
}

/// The whole source: the keys bound to their locals, the helpers the keys allow, the body.
fn source(keys: &[Key], body: &str) -> String {
    let mut source = String::new();
    for (i, key) in keys.iter().enumerate() {
        source.push_str(&format!("local {} = KEYS[{}]\n", key.lua_name(), i + 1));
    }
    source.push_str(LEASE_VALUE);
    source.push_str(LINK_MEMBER);
    for helper in HELPERS {
        if helper.keys.iter().all(|k| keys.contains(k)) {
            source.push_str(helper.source);
        }
    }
    source.push_str(body);
    source
}

/// The compiled scripts (their SHA1 is computed once).
pub(crate) struct Scripts {
    pub(crate) advance: StoreScript,
    pub(crate) claim: StoreScript,
    pub(crate) commit: StoreScript,
    pub(crate) revert: StoreScript,
    pub(crate) finalize: StoreScript,
    pub(crate) fail: StoreScript,
    pub(crate) heartbeat: StoreScript,
    pub(crate) release: StoreScript,
    pub(crate) reap: StoreScript,
    pub(crate) promote: StoreScript,
    pub(crate) dead_letters: StoreScript,
    pub(crate) lead: StoreScript,
    pub(crate) resign: StoreScript,
}

/// Every script: its keys and its body.
const SCRIPTS: [(&str, &[Key], &str); 13] = [
    (
        "advance",
        &[LastSynced, Done, Lease, LeaseDeadline, Leader],
        ADVANCE,
    ),
    (
        "claim",
        &[PriorityQueue, BacklogQueue, Done, Lease, LeaseDeadline],
        CLAIM,
    ),
    (
        "commit",
        &[
            Done,
            Events,
            Lease,
            LeaseDeadline,
            Attempts,
            Retry,
            RetryPath,
            Stats,
            Links,
            Finalized,
            Leader,
        ],
        COMMIT,
    ),
    (
        "revert",
        &[Finalized, Links, Events, Done, PriorityQueue, Stats, Leader],
        REVERT,
    ),
    ("finalize", &[Finalized, Events, Links, Leader], FINALIZE),
    (
        "fail",
        &[Done, Attempts, Retry, RetryPath, Dead, Lease, LeaseDeadline],
        FAIL,
    ),
    ("heartbeat", &[Lease, LeaseDeadline], HEARTBEAT),
    (
        "release",
        &[Done, Lease, LeaseDeadline, PriorityQueue, BacklogQueue],
        RELEASE,
    ),
    (
        "reap",
        &[LeaseDeadline, Done, Lease, PriorityQueue, BacklogQueue],
        REAP,
    ),
    (
        "promote",
        &[Retry, RetryPath, PriorityQueue, BacklogQueue],
        PROMOTE,
    ),
    (
        "dead_letters",
        &[Dead, Attempts, PriorityQueue, BacklogQueue],
        DEAD_LETTERS,
    ),
    ("lead", &[Leader, Epoch, Instances], LEAD),
    ("resign", &[Leader, Instances], RESIGN),
];

impl Scripts {
    pub(crate) fn new() -> Self {
        let [advance, claim, commit, revert, finalize, fail, heartbeat, release, reap, promote, dead_letters, lead, resign] =
            SCRIPTS.map(|(_, keys, body)| StoreScript::new(keys, body));
        Scripts {
            advance,
            claim,
            commit,
            revert,
            finalize,
            fail,
            heartbeat,
            release,
            reap,
            promote,
            dead_letters,
            lead,
            resign,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first argument of each `redis.call(...)` in `source`: the key of every command the
    /// scripts use (none takes its key elsewhere).
    fn called_keys(source: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (at, _) in source.match_indices("redis.call(") {
            let rest = &source[at + "redis.call(".len()..];
            let mut args = Vec::new();
            let (mut depth, mut start) = (0, 0);
            for (i, c) in rest.char_indices() {
                match c {
                    '(' | '{' => depth += 1,
                    ')' | '}' if depth == 0 => {
                        args.push(rest[start..i].trim().to_string());
                        break;
                    }
                    ')' | '}' => depth -= 1,
                    ',' if depth == 0 => {
                        args.push(rest[start..i].trim().to_string());
                        start = i + 1;
                        if args.len() == 2 {
                            break;
                        }
                    }
                    _ => {}
                }
            }
            out.push((args[0].trim_matches('\'').to_string(), args[1].clone()));
        }
        out
    }

    /// Redis does not enforce declared keys outside cluster mode, so this is checked on the
    /// sources: every command names a key the script was given, by its local or through
    /// `queue_key` (which needs both queues); none is concatenated, none read from KEYS or ARGV.
    #[test]
    fn every_script_touches_only_the_keys_it_is_given() {
        for (name, keys, body) in SCRIPTS {
            let source = source(keys, body);
            let calls = called_keys(&source);
            assert!(!calls.is_empty(), "{name}");
            for (command, key) in calls {
                let given = keys.iter().any(|k| k.lua_name() == key)
                    || (key.starts_with("queue_key(")
                        && keys.contains(&PriorityQueue)
                        && keys.contains(&BacklogQueue));
                assert!(given, "{name}: {command} on {key}, not a key it is given");
            }
            assert!(!body.contains("KEYS["), "{name} reads KEYS by position");
            assert!(!source.contains("':"), "{name} builds a key name");
        }
    }

    /// A helper a script calls is in its prelude (else Lua fails only when the call runs).
    #[test]
    fn every_helper_a_script_calls_is_in_its_prelude() {
        for (name, keys, body) in SCRIPTS {
            let source = source(keys, body);
            for helper in [
                "queue_key",
                "release_lease",
                "return_to_queue",
                "link_at",
                "fenced_out",
            ] {
                if body.contains(&format!("{helper}(")) {
                    assert!(
                        source.contains(&format!("local function {helper}(")),
                        "{name} calls {helper} without the keys it needs"
                    );
                }
            }
        }
    }

    #[test]
    fn keys_are_bound_in_the_order_they_are_given() {
        let source = source(&[Retry, RetryPath], "return 1");
        assert!(source.starts_with("local RETRY = KEYS[1]\nlocal RETRY_PATH = KEYS[2]\n"));
        assert!(!source.contains("local function queue_key("));
        assert!(!source.contains("local function release_lease("));
        assert!(!source.contains("local function link_at("));
    }
}
