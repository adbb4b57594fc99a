#include "housekeep.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "herald/keys.h"
#include "worker.h"

/* Often enough that a short setting (tests) acts soon; never more than
 * once a minute for the usual days. */
static int64_t period_ms(int64_t setting_ms)
{
    int64_t p = setting_ms / 2;
    return p < 1000 ? 1000 : p > 60000 ? 60000 : p;
}

static void on_trimmed(struct redis_client *c, redisReply *reply, void *arg)
{
    (void)c;
    (void)arg;
    if (reply && reply->type == REDIS_REPLY_INTEGER && reply->integer > 0)
        log_event(LOG_INFO, "event=notes_trimmed removed=%lld", (long long)reply->integer);
    else if (reply && reply->type == REDIS_REPLY_ERROR)
        log_event(LOG_WARN, "event=notes_trim_failed reason=%s", LOG_VALUE(reply->str));
}

static const char *field(const redisReply *map, const char *name)
{
    for (size_t i = 0; map->type == REDIS_REPLY_ARRAY && i + 1 < map->elements; i += 2)
        if (map->element[i]->type == REDIS_REPLY_STRING &&
            strcmp(map->element[i]->str, name) == 0) {
            const redisReply *v = map->element[i + 1];
            return v->type == REDIS_REPLY_STRING ? v->str : NULL;
        }
    return NULL;
}

static long long int_field(const redisReply *map, const char *name)
{
    for (size_t i = 0; map->type == REDIS_REPLY_ARRAY && i + 1 < map->elements; i += 2)
        if (map->element[i]->type == REDIS_REPLY_STRING &&
            strcmp(map->element[i]->str, name) == 0 &&
            map->element[i + 1]->type == REDIS_REPLY_INTEGER)
            return map->element[i + 1]->integer;
    return -1;
}

/* Forget one consumer, atomically with the checks that make it safe: its
 * process publishes no status (a live one does every second: a blocked
 * read does not count as activity for XINFO's idle in Redis 7.0), and it
 * holds nothing pending at this very moment (an entry delivered to it and
 * then deleted with it would leave the group's PEL, and its note would be
 * refused as "already acknowledged"). KEYS: jobs. ARGV: group, consumer,
 * key prefix. A worker's consumer is "<engine.consumer>-<n>". */
static const char forget_script[] =
    "local base = string.match(ARGV[2], '^(.*)%-%d+$') or ARGV[2] "
    "if redis.call('EXISTS', ARGV[3] .. 'status:' .. base) == 1 then return 0 end "
    "local p = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2]) "
    "if #p > 0 then return 0 end "
    "redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2]) "
    "return 1";

static void on_forgotten(struct redis_client *c, redisReply *reply, void *arg)
{
    (void)c;
    char *name = arg;
    /* 0: alive after all, or it holds an entry: kept. */
    if (reply && reply->type == REDIS_REPLY_INTEGER && reply->integer > 0)
        log_event(LOG_INFO, "event=consumer_forgotten consumer=%s", LOG_VALUE(name));
    free(name);
}

/* XINFO CONSUMERS: name, pending, idle (ms since it last read), ... */
static void on_consumers(struct redis_client *c, redisReply *reply, void *arg)
{
    struct worker *w = arg;
    if (!reply || reply->type != REDIS_REPLY_ARRAY)
        return;
    const struct config *cfg = w->cfg;
    for (size_t i = 0; i < reply->elements; i++) {
        const redisReply *m = reply->element[i];
        const char *name = field(m, "name");
        long long pending = int_field(m, "pending"), idle = int_field(m, "idle");
        /* Pending entries are claimed by the others first (XAUTOCLAIM);
         * only then does forgetting the consumer lose nothing. */
        if (!name || pending != 0 || idle < cfg->engine.forget_consumers_ms)
            continue;
        char *copy = strdup(name);
        const char *argv[] = {"EVAL",           forget_script, "1", cfg->redis.jobs,
                              cfg->redis.group, name,          w->sh->keys.prefix};
        if (redis_client_command_argv(c, on_forgotten, copy, (int)HERALD_ARRAY_LEN(argv), argv,
                                      NULL) < 0)
            free(copy);
    }
}

/* The suspend hash, as worker 0 read it: published when it changed. */
static void on_suspensions(struct redis_client *c, redisReply *reply, void *arg)
{
    (void)c;
    struct worker *w = arg;
    if (!reply || reply->type != REDIS_REPLY_ARRAY)
        return;
    struct susp_table t;
    memset(&t, 0, sizeof t);
    for (size_t i = 0; i + 1 < reply->elements && t.n < SUSP_MAX; i += 2)
        if (reply->element[i]->type == REDIS_REPLY_STRING &&
            reply->element[i + 1]->type == REDIS_REPLY_STRING &&
            susp_parse(reply->element[i]->str, reply->element[i + 1]->str, &t.e[t.n]) == 0)
            t.n++;
    struct susp_shared *s = &w->sh->susp;
    pthread_mutex_lock(&s->lock);
    if (memcmp(&s->table, &t, sizeof t) != 0) {
        s->table = t;
        atomic_fetch_add(&s->gen, 1);
        log_event(LOG_INFO, "event=suspensions_changed count=%zu", t.n);
    }
    pthread_mutex_unlock(&s->lock);
}

/* Every worker: take the published suspensions when they changed. */
static void sync_suspensions(struct worker *w)
{
    struct susp_shared *s = &w->sh->susp;
    unsigned gen = atomic_load(&s->gen);
    if (gen == w->susp_gen)
        return;
    pthread_mutex_lock(&s->lock);
    w->susp = s->table;
    w->susp_gen = atomic_load(&s->gen);
    pthread_mutex_unlock(&s->lock);
}

void housekeep_tick(struct worker *w, int64_t now_ms)
{
    const struct config *cfg = w->cfg;
    sync_suspensions(w);
    if (w->idx != 0 || !redis_client_up(&w->notes))
        return;
    if (now_ms >= w->next_susp_ms) {
        w->next_susp_ms = now_ms + 1000;
        char key[KEYS_MAX];
        keys_suspend(&w->sh->keys, key, sizeof key);
        const char *argv[] = {"HGETALL", key};
        redis_client_command_argv(&w->notes, on_suspensions, w, 2, argv, NULL);
    }
    if (cfg->redis.events_max_age_ms > 0 && now_ms >= w->next_trim_ms) {
        w->next_trim_ms = now_ms + period_ms(cfg->redis.events_max_age_ms);
        char minid[32];
        snprintf(minid, sizeof minid, "%" PRId64, clock_wall_ms() - cfg->redis.events_max_age_ms);
        /* Exact, not "~": a small stream would otherwise keep old notes
         * until a whole node of them is old. Once a minute, it is cheap. */
        const char *argv[] = {"XTRIM", cfg->redis.events, "MINID", minid};
        redis_client_command_argv(&w->notes, on_trimmed, NULL, (int)HERALD_ARRAY_LEN(argv), argv,
                                  NULL);
    }
    if (cfg->engine.forget_consumers_ms > 0 && now_ms >= w->next_forget_ms) {
        w->next_forget_ms = now_ms + period_ms(cfg->engine.forget_consumers_ms);
        const char *argv[] = {"XINFO", "CONSUMERS", cfg->redis.jobs, cfg->redis.group};
        redis_client_command_argv(&w->notes, on_consumers, w, (int)HERALD_ARRAY_LEN(argv), argv,
                                  NULL);
    }
}
