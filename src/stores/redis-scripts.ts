/**
 * The Lua scripts of the Redis store. Each one is a single atomic step on the server, so that no
 * interleaving of gateway replicas can see or leave a half-done state. They are registered with
 * ioredis `scripts` (EVALSHA, with the script sent once per connection when Redis does not know it).
 *
 * Key layout under the store's prefix P (user keys and tags are appended verbatim):
 *   P e:<key>   hash: field "v" = the value, one field "t:<tag>" per tag of that value
 *   P t:<tag>   set of the keys set with that tag (may hold keys that have since expired)
 *   P b:<key>   hash: token bucket, fields "tk" (tokens, fractional) and "ts" (ms of Redis TIME)
 *   P l:<key>   string: a lock's owner token
 *
 * Scripts build some key names from their arguments (the tag sets of an entry, the entries of a tag)
 * instead of receiving them in KEYS. That is fine on a single Redis or with Sentinel; on Redis Cluster
 * every key must then live in one slot, which a hash tag in the prefix does (`{switchboard}:`).
 *
 * Numbers: Lua numbers are doubles, and a number in a script's reply is truncated to an integer, so
 * scripts reply with integers they rounded themselves, and store fractional state with %.17g, which
 * round-trips a double exactly (tostring keeps only 14 digits, too few for a ms timestamp plus a
 * fraction).
 */

/**
 * Sets an entry and its tags in one step: the old value's tags are let go first, so tags always
 * follow the latest set. A tag set lives as long as its longest-lived member (for ever if one has no
 * TTL); each set also checks two random members of each of its tag sets and drops those whose entry
 * is gone, so a busy tag does not pile up expired keys.
 *
 * KEYS[1] entry key; ARGV: prefix, key, value, ttlMs (0: none), tags…
 */
const SET = `
local entry = KEYS[1]
local prefix, key, value, ttl = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
for _, field in ipairs(redis.call('HKEYS', entry)) do
  if string.sub(field, 1, 2) == 't:' then
    redis.call('SREM', prefix .. 't:' .. string.sub(field, 3), key)
  end
end
redis.call('DEL', entry)
redis.call('HSET', entry, 'v', value)
for i = 5, #ARGV do
  local tag = ARGV[i]
  local tagKey = prefix .. 't:' .. tag
  redis.call('HSET', entry, 't:' .. tag, '1')
  local before = redis.call('PTTL', tagKey)
  redis.call('SADD', tagKey, key)
  if ttl == 0 then
    redis.call('PERSIST', tagKey)
  elseif before == -2 or (before >= 0 and before < ttl) then
    redis.call('PEXPIRE', tagKey, ttl)
  end
  for _, member in ipairs(redis.call('SRANDMEMBER', tagKey, 2)) do
    if member ~= key and redis.call('HEXISTS', prefix .. 'e:' .. member, 't:' .. tag) == 0 then
      redis.call('SREM', tagKey, member)
    end
  end
end
if ttl > 0 then
  redis.call('PEXPIRE', entry, ttl)
end
return 1
`;

/**
 * Deletes an entry and takes it out of its tag sets. Returns 1 if it was there.
 *
 * KEYS[1] entry key; ARGV: prefix, key
 */
const DELETE = `
local entry = KEYS[1]
for _, field in ipairs(redis.call('HKEYS', entry)) do
  if string.sub(field, 1, 2) == 't:' then
    redis.call('SREM', ARGV[1] .. 't:' .. string.sub(field, 3), ARGV[2])
  end
end
return redis.call('DEL', entry)
`;

/**
 * One batch of a tag invalidation: pops up to `batch` members of the tag set and deletes those
 * entries that still carry the tag (a key may have expired and been set again with other tags; it
 * must survive). The caller repeats until a batch pops fewer than `batch`: at that instant the set
 * was empty. Since a set writes value and membership in one step, a concurrent set is either popped
 * by some batch or lands after the last one, i.e. after the invalidation: no entry can escape it.
 * Batches keep each step short, so invalidating a huge tag never blocks Redis for long.
 *
 * KEYS[1] tag key; ARGV: prefix, tag, batch. Returns {deleted, popped}.
 */
const INVALIDATE = `
local members = redis.call('SPOP', KEYS[1], tonumber(ARGV[3]))
local field = 't:' .. ARGV[2]
local deleted = 0
for _, member in ipairs(members) do
  local entry = ARGV[1] .. 'e:' .. member
  if redis.call('HEXISTS', entry, field) == 1 then
    for _, other in ipairs(redis.call('HKEYS', entry)) do
      if string.sub(other, 1, 2) == 't:' and other ~= field then
        redis.call('SREM', ARGV[1] .. 't:' .. string.sub(other, 3), member)
      end
    end
    redis.call('DEL', entry)
    deleted = deleted + 1
  end
end
return {deleted, #members}
`;

/**
 * Saves a bucket's state (`tokens` at `now`), shared by the scripts that change it: a full bucket is
 * deleted, any other expires once it would have refilled (never, without refill).
 */
const SAVE_BUCKET = `if tokens + epsilon >= capacity then
  redis.call('DEL', KEYS[1])
else
  redis.call('HSET', KEYS[1], 'tk', string.format('%.17g', tokens), 'ts', string.format('%.17g', now))
  if rate > 0 then
    redis.call('PEXPIRE', KEYS[1], math.min(1e15, math.ceil((capacity - tokens) / rate * 1000)))
  else
    redis.call('PERSIST', KEYS[1])
  end
end`;

/**
 * Token bucket, the same arithmetic as the memory store (stores/contract.ts: `take`), on Redis' clock
 * (TIME), so every replica shares one clock and one bucket. A take that may wait (maxWaitMs >= 0)
 * reserves the tokens its turn brings within that wait, leaving the bucket below zero, so that takes
 * from every replica queue first come, first served. A bucket that is full again is deleted (the same
 * as no bucket), and a partly drained one (or one in debt) expires exactly when it would be full;
 * one that never refills persists.
 *
 * KEYS[1] bucket key; ARGV: capacity, refillPerSec, n, maxWaitMs (-1: refuse rather than wait).
 * Returns {ok (1|0), retryAfterMs (-1: never), remaining whole tokens}.
 */
const TAKE = `
local capacity, rate, n, maxWait = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local epsilon = 1e-9
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + tonumber(time[2]) / 1000
local tokens = capacity
local state = redis.call('HMGET', KEYS[1], 'tk', 'ts')
if state[1] and state[2] then
  local elapsed = math.max(0, now - tonumber(state[2]))
  tokens = math.min(capacity, tonumber(state[1]) + elapsed * rate / 1000)
end
local ok, retry = 0, 0
if n == 0 then
  ok = 1
elseif tokens + epsilon >= n then
  ok = 1
  tokens = math.max(0, tokens - n)
elseif n > capacity or rate == 0 then
  retry = -1
else
  retry = math.ceil((n - tokens) / rate * 1000)
  if maxWait >= 0 and retry <= maxWait then
    ok = 1
    tokens = -retry * rate / 1000
  end
end
${SAVE_BUCKET}
return {ok, retry, math.max(0, math.floor(tokens + epsilon))}
`;

/**
 * Gives back tokens a take reserved (or took) and will not use, as the memory store does
 * (stores/contract.ts: `giveBack`): the debt beyond them belongs to reservations made after them,
 * which keep their turn.
 *
 * KEYS[1] bucket key; ARGV: capacity, refillPerSec, n, dueInMs. Returns 1.
 */
const RETURN = `
local capacity, rate, n, dueIn = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local epsilon = 1e-9
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + tonumber(time[2]) / 1000
local state = redis.call('HMGET', KEYS[1], 'tk', 'ts')
if not (state[1] and state[2]) then
  return 1
end
local elapsed = math.max(0, now - tonumber(state[2]))
local tokens = math.min(capacity, tonumber(state[1]) + elapsed * rate / 1000)
local claimedAfter = math.max(0, -tokens - math.max(0, dueIn) * rate / 1000)
tokens = math.min(capacity, tokens + math.max(0, n - claimedAfter))
${SAVE_BUCKET}
return 1
`;

/**
 * Releases a lock only for its owner (a holder whose lock expired and was taken by another must not
 * free the new owner's), and tells waiters on every replica, in the same step.
 *
 * KEYS[1] lock key; ARGV: token, channel, key. Returns 1 if released.
 */
const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[2], ARGV[3])
  return 1
end
return 0
`;

/** For ioredis' `scripts` option: each becomes a command on the client. */
export const SCRIPTS = {
  switchboardSet: { lua: SET, numberOfKeys: 1 },
  switchboardDelete: { lua: DELETE, numberOfKeys: 1 },
  switchboardInvalidate: { lua: INVALIDATE, numberOfKeys: 1 },
  switchboardTake: { lua: TAKE, numberOfKeys: 1 },
  switchboardReturn: { lua: RETURN, numberOfKeys: 1 },
  switchboardRelease: { lua: RELEASE, numberOfKeys: 1 },
} as const;

/** The commands SCRIPTS add to a client (ioredis cannot type commands defined at run time). */
export interface ScriptCommands {
  switchboardSet(
    entryKey: string,
    prefix: string,
    key: string,
    value: string,
    ttlMs: string,
    ...tags: string[]
  ): Promise<number>;
  switchboardDelete(entryKey: string, prefix: string, key: string): Promise<number>;
  switchboardInvalidate(
    tagKey: string,
    prefix: string,
    tag: string,
    batch: string,
  ): Promise<[number, number]>;
  switchboardTake(
    bucketKey: string,
    capacity: string,
    refillPerSec: string,
    n: string,
    maxWaitMs: string,
  ): Promise<[number, number, number]>;
  switchboardReturn(
    bucketKey: string,
    capacity: string,
    refillPerSec: string,
    n: string,
    dueInMs: string,
  ): Promise<number>;
  switchboardRelease(lockKey: string, token: string, channel: string, key: string): Promise<number>;
}
