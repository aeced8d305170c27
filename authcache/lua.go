package authcache

import "github.com/redis/go-redis/v9"

// The Lua scripts redis.go runs. Each touches the keys of one hash tag only (one cluster
// slot): the token's, or the user's.

// The fill scripts, as Lua functions so that the single-slot scripts and the one-round-trip
// script for a non-cluster Redis share one definition.
const luaFill = `
local function index(evicted, idx, h, ttl)
  if redis.call('EXISTS', evicted) == 1 then return 0 end
  redis.call('SADD', idx, h)
  if redis.call('PTTL', idx) < tonumber(ttl) then redis.call('PEXPIRE', idx, ttl) end
  return 1
end
local function fill(gen, key, want, value, ttl)
  if (redis.call('GET', gen) or '') ~= want then return 0 end
  redis.call('SET', key, value, 'PX', ttl)
  return 1
end
`

var (
	// indexScript: KEYS user-evicted:{u}, user:{u}; ARGV h, ttl ms. 1 if indexed.
	indexScript = redis.NewScript(luaFill + `return index(KEYS[1], KEYS[2], ARGV[1], ARGV[2])`)
	// fillScript: KEYS gen:{h}, the key to write; ARGV the generation read, value, ttl ms.
	fillScript = redis.NewScript(luaFill + `return fill(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3])`)
	// indexFillScript is both in one round trip, for a Redis that is not a cluster: KEYS
	// user-evicted:{u}, user:{u}, gen:{h}, {h}; ARGV h, ttl ms, generation read, value.
	indexFillScript = redis.NewScript(luaFill + `
if index(KEYS[1], KEYS[2], ARGV[1], ARGV[2]) == 0 then return 0 end
return fill(KEYS[3], KEYS[4], ARGV[3], ARGV[4], ARGV[2])`)
)

// evictTokenScript forgets one token (one slot): it deletes the session and the negative
// entry, bumps the generation (so no fill in flight lands) and returns the session that was
// cached, if any. KEYS {h}, neg:{h}, gen:{h}; ARGV guardTTL ms.
var evictTokenScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('INCR', KEYS[3])
redis.call('PEXPIRE', KEYS[3], ARGV[1])
return v`)

// evictUserScript starts forgetting one user (one slot): it leaves user-evicted:{u} for
// guardTTL, so a fill that has not indexed its session yet does not, and returns the index's
// members. The index itself is deleted only once every member is evicted, so a retry after
// a failure half-way finds them again. KEYS user:{u}, user-evicted:{u}; ARGV guardTTL ms.
var evictUserScript = redis.NewScript(`
redis.call('SET', KEYS[2], '1', 'PX', ARGV[1])
return redis.call('SMEMBERS', KEYS[1])`)
