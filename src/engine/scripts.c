/* The Lua scripts that make a case note and the job's acknowledgement one
 * atomic step. XACK's return value is the guard: 0 means another consumer
 * (after a claim) already finished this entry, so no second note is added. */
#include "herald/engine.h"

/* KEYS: jobs, events, the tenant's suppression set. ARGV: group, entry id,
 * address to suppress ("" for none: only hard bounces add one), note
 * field/value pairs... */
const char *const notes_script_terminal =
    "if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end\n"
    "redis.call('XDEL', KEYS[1], ARGV[2])\n"
    "if ARGV[3] ~= '' then redis.call('SADD', KEYS[3], ARGV[3]) end\n"
    "redis.call('XADD', KEYS[2], '*', unpack(ARGV, 4))\n"
    "return 1\n";

/* Admission, before any connection. KEYS: idempotency key, the tenant's
 * suppression set, the global suppression set. ARGV: entry id, window ms,
 * recipient (lower-cased), "1" to check idempotency (first attempts only).
 * The idempotency key holds the entry that first claimed the id, so the
 * same entry read again after a crash is still admitted. */
const char *const notes_script_admit =
    "if redis.call('SISMEMBER', KEYS[2], ARGV[3]) == 1 then return 'suppressed:tenant' end\n"
    "if redis.call('SISMEMBER', KEYS[3], ARGV[3]) == 1 then return 'suppressed:global' end\n"
    "if ARGV[4] == '1' then\n"
    "  local v = redis.call('GET', KEYS[1])\n"
    "  if v and v ~= ARGV[1] then return 'duplicate:' .. v end\n"
    "  if not v then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) end\n"
    "end\n"
    "return 'ok'\n";

/* KEYS: jobs, events, retry zset. ARGV: group, entry id, due ms, job hash
 * key, n (count of job field/value items), job items..., note items... (a
 * note is optional: scheduling a send_at job writes none). */
const char *const notes_script_defer =
    "if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end\n"
    "redis.call('XDEL', KEYS[1], ARGV[2])\n"
    "local n = tonumber(ARGV[5])\n"
    "redis.call('DEL', ARGV[4])\n"
    "redis.call('HSET', ARGV[4], unpack(ARGV, 6, 5 + n))\n"
    "redis.call('ZADD', KEYS[3], ARGV[3], ARGV[4])\n"
    "if #ARGV > 5 + n then redis.call('XADD', KEYS[2], '*', unpack(ARGV, 6 + n)) end\n"
    "return 1\n";

/* KEYS: retry zset, jobs. ARGV: now ms, max entries to move. Moves due jobs
 * back into the stream as new entries; the hash and the zset member go in
 * the same step, so a job is never both waiting and queued. */
const char *const notes_script_mover =
    "local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, "
    "tonumber(ARGV[2]))\n"
    "for _, k in ipairs(due) do\n"
    "  local f = redis.call('HGETALL', k)\n"
    "  if #f > 0 then redis.call('XADD', KEYS[2], '*', unpack(f)) end\n"
    "  redis.call('DEL', k)\n"
    "  redis.call('ZREM', KEYS[1], k)\n"
    "end\n"
    "return #due\n";
