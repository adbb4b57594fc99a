/* The Lua scripts that make a case note and the job's acknowledgement one
 * atomic step. XACK's return value is the guard: 0 means another consumer
 * (after a claim) already finished this entry, so no second note is added.
 *
 * Each job id (tenant + id) has a state key, `<prefix>state:<tenant>:<id>`,
 * kept for the idempotency window, that cancels and replacements read:
 *   sending:<entry>    admitted; on its way to (or at) a mail server
 *   scheduling:<entry> admitted to claim its id; on its way to the retry set
 *   retry:<hash key>   waiting in the retry set (deferred or scheduled)
 *   moved:<entry>      put back into the stream by the mover as that entry:
 *                      the only entry whose herald-written fields (attempt,
 *                      counted, ...) intake believes
 *   cancelled:<entry>  cancelled by that control entry; never admitted again
 *   done:<event>       ended with that terminal note */
#include "herald/engine.h"

/* Counts behind `herald stats`: every note bumps one field of its tenant's
 * day hash <prefix>stats:<tenant>:<YYYY-MM-DD> (UTC), `<event>|<recipient
 * domain>`, in the same step that writes the note, so the counts never
 * disagree with the stream. One command per note; months, days and domains
 * are summed when read. Kept 400 days. */
#define COUNT_NOTE_LUA                                                                             \
    "local function civil(ms)\n"                                                                   \
    "  local z = math.floor(ms / 86400000) + 719468\n"                                             \
    "  local era = math.floor(z / 146097)\n"                                                       \
    "  local doe = z - era * 146097\n"                                                             \
    "  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)\n"           \
    "    - math.floor(doe / 146096)) / 365)\n"                                                     \
    "  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))\n"              \
    "  local mp = math.floor((5 * doy + 2) / 153)\n"                                               \
    "  local d = doy - math.floor((153 * mp + 2) / 5) + 1\n"                                       \
    "  local m = mp < 10 and mp + 3 or mp - 9\n"                                                   \
    "  local y = yoe + era * 400\n"                                                                \
    "  if m <= 2 then y = y + 1 end\n"                                                             \
    "  return y, m, d\n"                                                                           \
    "end\n"                                                                                        \
    "local function count_note(prefix, items)\n"                                                   \
    "  local ev, tenant, at, to\n"                                                                 \
    "  for i = 1, #items - 1, 2 do\n"                                                              \
    "    local k = items[i]\n"                                                                     \
    "    if k == 'event' then ev = items[i + 1] elseif k == 'tenant' then tenant = items[i + 1]\n" \
    "    elseif k == 'at' then at = items[i + 1] elseif k == 'to' then to = items[i + 1] end\n"    \
    "  end\n"                                                                                      \
    "  if not ev or not tenant or tenant == '' then return end\n"                                  \
    "  local y, m, d = civil(tonumber(at) or 0)\n"                                                 \
    "  local key = string.format('%s:%s:%04d-%02d-%02d', prefix, tenant, y, m, d)\n"               \
    "  local dom = to and string.match(to, '@([^@]+)$')\n"                                         \
    "  dom = dom and string.lower(dom) or '-'\n"                                                   \
    "  if redis.call('HINCRBY', key, ev .. '|' .. dom, 1) == 1 then\n"                             \
    "    redis.call('EXPIRE', key, 34560000)\n"                                                    \
    "  end\n"                                                                                      \
    "end\n"

/* KEYS: jobs, events, the tenant's suppression set, the job's state key,
 * the stats prefix, the suppression set's info hash. ARGV: group, entry
 * id, address to suppress ("" for none: only hard bounces add one), state
 * to record ("" to leave it: duplicates must not touch the original's),
 * window ms, note field/value pairs... A suppressed address keeps when and
 * why (the bounce's reply) in the info hash. */
const char *const notes_script_terminal =
    COUNT_NOTE_LUA
    "if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end\n"
    "redis.call('XDEL', KEYS[1], ARGV[2])\n"
    "if ARGV[3] ~= '' then\n"
    "  redis.call('SADD', KEYS[3], ARGV[3])\n"
    "  local at, why = '0', ''\n"
    "  for i = 6, #ARGV - 1, 2 do\n"
    "    if ARGV[i] == 'at' then at = ARGV[i + 1] elseif ARGV[i] == 'reply' then why = ARGV[i + 1] end\n"
    "  end\n"
    "  redis.call('HSET', KEYS[6], ARGV[3], at .. ' bounce ' .. why)\n"
    "end\n"
    "if ARGV[4] ~= '' then redis.call('SET', KEYS[4], ARGV[4], 'PX', ARGV[5]) end\n"
    "redis.call('XADD', KEYS[2], '*', unpack(ARGV, 6))\n"
    "count_note(KEYS[5], {unpack(ARGV, 6)})\n"
    "return 1\n";

/* A one-click unsubscribe (unsub.c). KEYS: the tenant's suppression set,
 * its info hash, the events stream, the stats prefix, the click's
 * once-key. ARGV: address key, at (ms), once-key lifetime (ms), note
 * field/value pairs... The once-key (tenant, recipient, token day) makes a
 * replayed or repeated POST a no-op: 0, no second note. An address already
 * on the list keeps its first reason. */
const char *const notes_script_unsubscribe =
    COUNT_NOTE_LUA
    "if not redis.call('SET', KEYS[5], ARGV[2], 'NX', 'PX', ARGV[3]) then return 0 end\n"
    "if redis.call('SADD', KEYS[1], ARGV[1]) == 1 then\n"
    "  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2] .. ' unsubscribe one-click unsubscribe')\n"
    "end\n"
    "redis.call('XADD', KEYS[3], '*', unpack(ARGV, 4))\n"
    "count_note(KEYS[4], {unpack(ARGV, 4)})\n"
    "return 1\n";

/* Shared by admission (a job that `replaces` another) and cancel entries:
 * end the target job if it has not been sent. A job waiting in the retry
 * set is taken out and gets its `cancelled` note here, in the same step;
 * any other not-yet-admitted copy meets the `cancelled:` state at
 * admission. Returns what happened, for the caller's note. */
/* The `cancelled` note of a job from its fields (a flat field/value list):
 * shared by cancel_target (a job in the retry set) and the defer script (a
 * job cancelled while its attempt was under way or it was being
 * scheduled). */
#define CANCEL_NOTE_LUA                                                                            \
    "local function cancel_note(f, by, now)\n"                                                     \
    "  local h = {}\n"                                                                             \
    "  for i = 1, #f - 1, 2 do h[f[i]] = f[i + 1] end\n"                                           \
    "  local n = {'event', 'cancelled', 'job', h['id'] or '', 'tenant', h['tenant'] or ''}\n"      \
    "  if h['ref'] then table.insert(n, 'ref'); table.insert(n, h['ref']) end\n"                  \
    "  if h['to'] then table.insert(n, 'to'); table.insert(n, h['to']) end\n"                     \
    "  table.insert(n, 'attempt'); table.insert(n, tostring((tonumber(h['attempt']) or 0)))\n"     \
    "  table.insert(n, 'at'); table.insert(n, now)\n"                                              \
    "  local enq = tonumber(h['enqueued_at'])\n"                                                   \
    "  if enq and enq > 0 then\n"                                                                  \
    "    table.insert(n, 'latency_ms'); table.insert(n, tostring(tonumber(now) - enq))\n"         \
    "  end\n"                                                                                      \
    "  table.insert(n, 'reason'); table.insert(n, 'cancelled by entry ' .. by)\n"                 \
    "  table.insert(n, 'cancelled_by'); table.insert(n, by)\n"                                     \
    "  return n\n"                                                                                 \
    "end\n"

#define CANCEL_TARGET_LUA                                                                          \
    "local function cancel_target(st_key, zset, events, by, window, now, stats)\n"                       \
    "  local st = redis.call('GET', st_key)\n"                                                     \
    "  local kind, rest = nil, nil\n"                                                              \
    "  if st then kind, rest = string.match(st, '^(%a+):(.*)$') end\n"                             \
    "  if kind == 'done' then return 'already-' .. rest end\n"                                     \
    "  if kind == 'cancelled' then return 'already-cancelled' end\n"                               \
    "  if kind == 'retry' then\n"                                                                  \
    "    local f = redis.call('HGETALL', rest)\n"                                                  \
    "    if #f > 0 then\n"                                                                         \
    "      redis.call('ZREM', zset, rest)\n"                                                       \
    "      redis.call('DEL', rest)\n"                                                              \
    "      local n = cancel_note(f, by, now)\n"                                                   \
    "      redis.call('XADD', events, '*', unpack(n))\n"                                           \
    "      count_note(stats, n)\n"                                                                 \
    "      redis.call('SET', st_key, 'done:cancelled', 'PX', window)\n"                           \
    "      return 'cancelled'\n"                                                                   \
    "    end\n"                                                                                    \
    "  end\n"                                                                                      \
    "  redis.call('SET', st_key, 'cancelled:' .. by, 'PX', window)\n"                              \
    "  if kind == 'sending' then return 'in-flight' end\n"                                        \
    "  if kind == 'retry' or kind == 'moved' or kind == 'scheduling' then return 'cancelled' end\n" \
    "  return 'not-seen'\n"                                                                        \
    "end\n"

/* Admission, before any connection, of a batch of jobs in one call: KEYS
 * are 10 per job and ARGV 9 per job, job after job in the same order (the
 * call is a list of jobs, so a batch can later be split per cluster slot),
 * and the reply is an array of one verdict per job in that order. Each
 * job's admission runs as it would alone, after the ones before it (a
 * duplicate or a `replaces` inside one batch sees the earlier job's
 * writes); an error in one job's admission (pcall) is that job's element
 * as an error reply, and the others still get their verdicts. Per job,
 * KEYS: idempotency key, the tenant's
 * suppression set, the global suppression set, this job's state key, the
 * replaced job's state key (any key when none), retry set, events, the
 * recipient cap key prefix, the tenant's rate key, the stats prefix.
 * ARGV: entry id that claims the id, window ms, recipient (its normalised
 * key), "1" to check idempotency, replaced id ("" for none; first attempts
 * only), now ms, recipient caps "count window_s ..." ("" to skip: already
 * counted, or exempt), tenant rate "count window_s k" taking k slots at
 * once, a lease the process spends locally ("" for none, already counted,
 * or paid from a lease).
 * The idempotency key holds the entry that first claimed the id, so the
 * same job read again after a crash or a park is still admitted. Returns
 * "ok" or "ok;replaced=<result>", "cancelled:<entry>", "duplicate:<entry>",
 * "suppressed:tenant|global", "wait:<ms>:recipient-cap|tenant-rate".
 *
 * Recipient caps are sliding windows over one log per recipient,
 * `<prefix>rcap:<recipient>`: a string of the ms times of its counted
 * sends, newest first, at most max(count) of them and none older than the
 * longest window (design.md, "Recipient caps"). A cap count/W is full when
 * its count-th newest time is inside (now - W, now]; the job then waits
 * exactly until that send leaves the window. Every cap is checked before
 * anything is written and the log is written only once the tenant rate
 * has passed too, so nothing has to be given back: GET and SET (with the
 * expiry) are the whole cost, whatever the number of caps. The tenant rate
 * is a GCRA whose theoretical arrival time is the key's value, shared by
 * every process. */
const char *const notes_script_admit =
    COUNT_NOTE_LUA
    CANCEL_NOTE_LUA
    CANCEL_TARGET_LUA
    "local function admit(K, A)\n"
    "  local st = redis.call('GET', K[4])\n"
    "  if st and string.sub(st, 1, 10) == 'cancelled:' then return st end\n"
    "  if A[4] == '1' then\n"
    "    local v = redis.call('GET', K[1])\n"
    "    if v and v ~= A[1] then return 'duplicate:' .. v end\n"
    "    if not v then redis.call('SET', K[1], A[1], 'PX', A[2]) end\n"
    "  end\n"
    "  local out = 'ok'\n"
    "  if A[5] ~= '' then\n"
    "    out = 'ok;replaced=' .. cancel_target(K[5], K[6], K[7], A[1], A[2], "
    "A[6], K[10])\n"
    "  end\n"
    "  if redis.call('SISMEMBER', K[2], A[3]) == 1 then return 'suppressed:tenant' end\n"
    "  if redis.call('SISMEMBER', K[3], A[3]) == 1 then return 'suppressed:global' end\n"
    "  local now = tonumber(A[6])\n"
    "  local rkey, rlog, wmax = nil, nil, 0\n"
    "  if A[7] ~= '' then\n"
    "    rkey = K[8] .. ':' .. A[3]\n"
    "    local sent = {}\n"
    "    local v = redis.call('GET', rkey)\n"
    "    if v then for t in string.gmatch(v, '%d+') do sent[#sent + 1] = tonumber(t) end end\n"
    "    local wait, keep = 0, 0\n"
    "    for c, w in string.gmatch(A[7], '(%d+) (%d+)') do\n"
    "      c = tonumber(c)\n"
    "      local wms = tonumber(w) * 1000\n"
    "      local e = sent[c]\n"
    "      if e and e > now - wms and e + wms - now > wait then wait = e + wms - now end\n"
    "      if c > keep then keep = c end\n"
    "      if wms > wmax then wmax = wms end\n"
    "    end\n"
    "    if wait > 0 then return 'wait:' .. string.format('%d', wait) .. ':recipient-cap' end\n"
    "    rlog = {}\n"
    "    local put = false\n"
    "    for _, t in ipairs(sent) do\n"
    "      if not put and now >= t then rlog[#rlog + 1] = now; put = true end\n"
    "      if #rlog >= keep or t <= now - wmax then break end\n"
    "      rlog[#rlog + 1] = t\n"
    "    end\n"
    "    if not put and #rlog < keep then rlog[#rlog + 1] = now end\n"
    "  end\n"
    "  local tc, tw, tk = string.match(A[8], '(%d+) (%d+) (%d+)')\n"
    "  if tc then\n"
    "    local T = tonumber(tw) * 1000 / tonumber(tc)\n"
    "    local tau = 1000 - T\n"
    "    if tau < 0 then tau = 0 end\n"
    "    local tat = tonumber(redis.call('GET', K[9]) or '0')\n"
    "    if tat < now then tat = now end\n"
    "    if tat - tau > now then\n"
    "      return 'wait:' .. math.ceil(tat - tau - now) .. ':tenant-rate'\n"
    "    end\n"
    "    tat = tat + (tonumber(tk) - 1) * T\n"
    "    redis.call('SET', K[9], tostring(tat + T), 'PX', math.ceil(tat + T - now) + 1000)\n"
    "  end\n"
    "  if rlog then\n"
    "    for i = 1, #rlog do rlog[i] = string.format('%d', rlog[i]) end\n"
    "    local px = math.max(tonumber(rlog[1]) + wmax - now, 1)\n"
    "    redis.call('SET', rkey, table.concat(rlog, ' '), 'PX', px)\n"
    "  end\n"
    "  redis.call('SET', K[4], (A[9] ~= '' and A[9] or 'sending') .. ':' .. A[1], 'PX', "
    "A[2])\n"
    "  return out\n"
    "end\n"
    "local res = {}\n"
    "for b = 0, #KEYS / 10 - 1 do\n"
    "  local ok, r = pcall(admit, {unpack(KEYS, b * 10 + 1, b * 10 + 10)},\n"
    "                      {unpack(ARGV, b * 9 + 1, b * 9 + 9)})\n"
    "  if ok then res[#res + 1] = r\n"
    "  else res[#res + 1] = {err = type(r) == 'table' and r.err or tostring(r)} end\n"
    "end\n"
    "return res\n";

/* A `cancel` control entry. KEYS: jobs, events, the target's state key,
 * retry set, the stats prefix. ARGV: group, entry id, window ms, now ms, the control entry's
 * note items... ; the script appends `result`. */
const char *const notes_script_cancel =
    COUNT_NOTE_LUA
    CANCEL_NOTE_LUA
    CANCEL_TARGET_LUA
    "if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end\n"
    "redis.call('XDEL', KEYS[1], ARGV[2])\n"
    "local r = cancel_target(KEYS[3], KEYS[4], KEYS[2], ARGV[2], ARGV[3], ARGV[4], KEYS[5])\n"
    "local n = {unpack(ARGV, 5)}\n"
    "table.insert(n, 'result'); table.insert(n, r)\n"
    "redis.call('XADD', KEYS[2], '*', unpack(n))\n"
    "count_note(KEYS[5], n)\n"
    "return 1\n";

/* KEYS: jobs, events, retry zset, the job's state key, the stats prefix. ARGV: group, entry
 * id, due ms, job hash key, window ms, n (count of job field/value items),
 * job items..., note items... (a note is optional: scheduling a send_at job
 * writes none). A job cancelled meanwhile (its attempt was under way, or it
 * was being scheduled) ends `cancelled` here and now instead of waiting in
 * the set for its next attempt. */
const char *const notes_script_defer =
    COUNT_NOTE_LUA
    CANCEL_NOTE_LUA
    "if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end\n"
    "redis.call('XDEL', KEYS[1], ARGV[2])\n"
    "local n = tonumber(ARGV[6])\n"
    "local st = redis.call('GET', KEYS[4])\n"
    "if st and string.sub(st, 1, 10) == 'cancelled:' then\n"
    "  local t = redis.call('TIME')\n"
    "  local now = string.format('%d', t[1] * 1000 + math.floor(t[2] / 1000))\n"
    "  local c = cancel_note({unpack(ARGV, 7, 6 + n)}, string.sub(st, 11), now)\n"
    "  redis.call('XADD', KEYS[2], '*', unpack(c))\n"
    "  count_note(KEYS[5], c)\n"
    "  redis.call('SET', KEYS[4], 'done:cancelled', 'PX', ARGV[5])\n"
    "  return 1\n"
    "end\n"
    "redis.call('DEL', ARGV[4])\n"
    "redis.call('HSET', ARGV[4], unpack(ARGV, 7, 6 + n))\n"
    "redis.call('ZADD', KEYS[3], ARGV[3], ARGV[4])\n"
    "redis.call('SET', KEYS[4], 'retry:' .. ARGV[4], 'PX', ARGV[5])\n"
    "if #ARGV > 6 + n then\n"
    "  redis.call('XADD', KEYS[2], '*', unpack(ARGV, 7 + n))\n"
    "  count_note(KEYS[5], {unpack(ARGV, 7 + n)})\n"
    "end\n"
    "return 1\n";

/* KEYS: retry zset, jobs. ARGV: now ms, max entries to move, key prefix,
 * window ms. Moves due jobs back into the stream as new entries; the hash
 * and the zset member go in the same step, so a job is never both waiting
 * and queued. The job's state (built from its tenant and id fields as
 * keys_state builds it) then names the new entry, `moved:<entry>`, unless
 * it was cancelled meanwhile: that is how intake tells herald's copy from
 * an entry a producer wrote with herald's fields in it. */
const char *const notes_script_mover =
    "local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, "
    "tonumber(ARGV[2]))\n"
    "for _, k in ipairs(due) do\n"
    "  local f = redis.call('HGETALL', k)\n"
    "  if #f > 0 then\n"
    "    local e = redis.call('XADD', KEYS[2], '*', unpack(f))\n"
    "    local tenant, id = '-', '-'\n"
    "    for i = 1, #f - 1, 2 do\n"
    "      if f[i] == 'tenant' then tenant = f[i + 1] elseif f[i] == 'id' then id = f[i + 1] end\n"
    "    end\n"
    "    local sk = ARGV[3] .. 'state:' .. tenant .. ':' .. id\n"
    "    local st = redis.call('GET', sk)\n"
    "    if not (st and string.sub(st, 1, 10) == 'cancelled:') then\n"
    "      redis.call('SET', sk, 'moved:' .. e, 'PX', ARGV[4])\n"
    "    end\n"
    "  end\n"
    "  redis.call('DEL', k)\n"
    "  redis.call('ZREM', KEYS[1], k)\n"
    "end\n"
    "return #due\n";

/* `herald queue bounce`: an operator gives up on a waiting job. KEYS:
 * retry zset, the job's hash, events, the job's state key, the stats
 * prefix. ARGV: now ms, reason, window ms. Only a job still in the retry
 * set is taken (the mover may have just moved it: then 0 and nothing
 * written); its one terminal note is `bounced`, category operator, in the
 * same step, so it can never also be delivered. */
const char *const notes_script_operator_bounce =
    COUNT_NOTE_LUA
    "if redis.call('ZREM', KEYS[1], KEYS[2]) == 0 then return 0 end\n"
    "local f = redis.call('HGETALL', KEYS[2])\n"
    "redis.call('DEL', KEYS[2])\n"
    "local h = {}\n"
    "for i = 1, #f, 2 do h[f[i]] = f[i + 1] end\n"
    "local n = {'event', 'bounced', 'job', h['id'] or '', 'tenant', h['tenant'] or ''}\n"
    "if h['ref'] then table.insert(n, 'ref'); table.insert(n, h['ref']) end\n"
    "if h['to'] then table.insert(n, 'to'); table.insert(n, h['to']) end\n"
    "table.insert(n, 'attempt'); table.insert(n, h['attempt'] or '0')\n"
    "table.insert(n, 'at'); table.insert(n, ARGV[1])\n"
    "table.insert(n, 'category'); table.insert(n, 'operator')\n"
    "table.insert(n, 'reason'); table.insert(n, 'bounced by an operator: ' .. ARGV[2])\n"
    "redis.call('XADD', KEYS[3], '*', unpack(n))\n"
    "count_note(KEYS[5], n)\n"
    "redis.call('SET', KEYS[4], 'done:bounced', 'PX', ARGV[3])\n"
    "return 1\n";

/* Limits shared by every process sending from an egress IP (lease.c).
 * KEYS: the path's GCRA key, the path's connection-grant hash, the path's
 * reputation hash. ARGV: now ms, emission interval us, burst tolerance us,
 * slots wanted (0: none), this process's name, the path's connection
 * limit (0: no grant wanted), grant ttl ms, connections this process has
 * open now, its reputation factor x 1e6.
 *
 * Slots: a GCRA whose theoretical arrival time (us) is the key's value:
 * up to `wanted` slots are granted at once if due, tat moves on by one
 * interval per slot; none granted gives the wait until the next.
 * Connections: every process records max(its grant, what it has open)
 * with an expiry (a process that dies stops counting after ttl); a
 * process is granted its equal share of the limit among the live ones,
 * never more than the limit less what the others hold, so the sum of
 * open connections never passes the limit while grants move.
 * Reputation: every live process records its factor; the path's shared
 * factor is the lowest of them (a receiver that throttles one sender
 * throttles the IP). Returns {granted, wait_ms, connections (-1: not
 * asked), shared factor x 1e6}. */
const char *const notes_script_lease =
    "local now_ms = tonumber(ARGV[1])\n"
    "local now = now_ms * 1000\n"
    "local T, tau, want = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])\n"
    "local granted, wait = 0, 0\n"
    "if want > 0 then\n"
    "  local tat = tonumber(redis.call('GET', KEYS[1]) or '0')\n"
    "  if tat < now then tat = now end\n"
    "  local room = math.floor((now + tau - tat) / T) + 1\n"
    "  if room > 0 then\n"
    "    granted = math.min(want, room)\n"
    "    tat = tat + granted * T\n"
    "    redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX',\n"
    "               math.ceil((tat - now) / 1000) + 2000)\n"
    "  else\n"
    "    wait = math.ceil((tat - tau - now) / 1000)\n"
    "  end\n"
    "end\n"
    "local conns = -1\n"
    "local limit = tonumber(ARGV[6])\n"
    "if limit > 0 then\n"
    "  local me, ttl, open = ARGV[5], tonumber(ARGV[7]), tonumber(ARGV[8])\n"
    "  local h = redis.call('HGETALL', KEYS[2])\n"
    "  local others, live = 0, 1\n"
    "  for i = 1, #h, 2 do\n"
    "    if h[i] ~= me then\n"
    "      local c, exp = string.match(h[i + 1], '^(%d+) (%d+)$')\n"
    "      if c and tonumber(exp) > now_ms then\n"
    "        others = others + tonumber(c)\n"
    "        live = live + 1\n"
    "      else\n"
    "        redis.call('HDEL', KEYS[2], h[i])\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "  conns = math.min(math.ceil(limit / live), limit - others)\n"
    "  if conns < 0 then conns = 0 end\n"
    "  local hold = conns > open and conns or open\n"
    "  redis.call('HSET', KEYS[2], me, hold .. ' ' .. (now_ms + ttl))\n"
    "  redis.call('PEXPIRE', KEYS[2], ttl * 2)\n"
    "end\n"
    "local shared = -1\n"
    "local mine = tonumber(ARGV[9])\n"
    "if mine and mine > 0 then\n"
    "  local me, ttl = ARGV[5], tonumber(ARGV[7])\n"
    "  redis.call('HSET', KEYS[3], me, mine .. ' ' .. (now_ms + ttl))\n"
    "  redis.call('PEXPIRE', KEYS[3], ttl * 2)\n"
    "  shared = mine\n"
    "  local h = redis.call('HGETALL', KEYS[3])\n"
    "  for i = 1, #h, 2 do\n"
    "    local f, exp = string.match(h[i + 1], '^(%d+) (%d+)$')\n"
    "    if f and tonumber(exp) > now_ms then\n"
    "      if tonumber(f) < shared then shared = tonumber(f) end\n"
    "    elseif h[i] ~= me then\n"
    "      redis.call('HDEL', KEYS[3], h[i])\n"
    "    end\n"
    "  end\n"
    "end\n"
    "return {granted, wait, conns, shared}\n";

/* A report that came back after the 250 (src/inbound): a late bounce or a
 * complaint, noted once per job and kind. KEYS: events, the once-only
 * mark, the tenant's suppression set, its info hash, the stats prefix, the
 * suspension hash. ARGV: the mark's lifetime (ms), the address to
 * suppress ("" none), why (for the info hash), the event to count it as in
 * the day's stats, the complaint share that suspends the tenant (0 never),
 * the deliveries today it needs first, the suspension's end (ms), then the
 * note's field/value pairs. Returns 1; 2 when a complaint took the tenant
 * over the share and suspended it; 0 when it was noted before. The
 * tenant's day counts are those `herald stats` reads. */
const char *const inbound_script_note =
    COUNT_NOTE_LUA
    "if not redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[1]) then return 0 end\n"
    "local at, tenant = '0', ''\n"
    "for i = 8, #ARGV - 1, 2 do\n"
    "  if ARGV[i] == 'at' then at = ARGV[i + 1] elseif ARGV[i] == 'tenant' then tenant = ARGV[i + 1] end\n"
    "end\n"
    "if ARGV[2] ~= '' then\n"
    "  redis.call('SADD', KEYS[3], ARGV[2])\n"
    "  redis.call('HSET', KEYS[4], ARGV[2], at .. ' ' .. ARGV[3])\n"
    "end\n"
    "redis.call('XADD', KEYS[1], '*', unpack(ARGV, 8))\n"
    "local items = {unpack(ARGV, 8)}\n"
    "for i = 1, #items - 1, 2 do if items[i] == 'event' then items[i + 1] = ARGV[4] end end\n"
    "count_note(KEYS[5], items)\n"
    "local share = tonumber(ARGV[5]) or 0\n"
    "if ARGV[4] ~= 'complained' or share <= 0 or tenant == '' then return 1 end\n"
    "local y, m, d = civil(tonumber(at) or 0)\n"
    "local f = redis.call('HGETALL', string.format('%s:%s:%04d-%02d-%02d', KEYS[5], tenant, y, m, d))\n"
    "local dl, cp = 0, 0\n"
    "for i = 1, #f - 1, 2 do\n"
    "  local ev = string.match(f[i], '^([%w_]+)|')\n"
    "  if ev == 'delivered' then dl = dl + tonumber(f[i + 1])\n"
    "  elseif ev == 'complained' then cp = cp + tonumber(f[i + 1]) end\n"
    "end\n"
    "if dl < (tonumber(ARGV[6]) or 1) or dl == 0 or cp / dl <= share then return 1 end\n"
    "local field = 'tenant=' .. tenant\n"
    "if redis.call('HEXISTS', KEYS[6], field) == 1 then return 1 end\n"
    "redis.call('HSET', KEYS[6], field, ARGV[7] .. ' ' .. at .. ' ' ..\n"
    "  string.format('complaint rate %.2f%% today (%d complaints of %d delivered) is over %.2f%%',\n"
    "    100 * cp / dl, cp, dl, 100 * share))\n"
    "return 2\n";
