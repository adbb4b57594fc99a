/* VERP return paths (verp.h): a tenant with `return_path` sends with
 * MAIL FROM b+<token>@<return_path>, the token signed with the deployment
 * secret and naming the job (its reference) and the attempt, so a bounce
 * that arrives after the 250 can be matched to its job and nobody can
 * forge one for someone else's. The match needs the job's details later,
 * when the job itself is long gone: they are kept in Redis under the
 * reference (and the Message-ID, for a report that lost the token) for
 * inbound.index_ttl, written as the message goes. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "herald/feedback.h"
#include "herald/keys.h"
#include "delivery.h"
#include "verp.h"
#include "worker.h"

static void on_indexed(struct redis_client *c, redisReply *reply, void *arg)
{
    (void)c;
    (void)arg;
    if (reply && reply->type == REDIS_REPLY_ERROR)
        log_event(LOG_WARN, "event=verp_index_failed reason=%s", LOG_VALUE(reply->str));
}

/* The job's details under its reference and its Message-ID. A lost
 * write costs the match of a late report, never the message: logged. */
static void index_message(struct delivery *d, uint64_t ref)
{
    struct worker *w = d->w;
    const struct job *j = &d->job;
    char key[KEYS_MAX], mkey[KEYS_MAX], ttl[24], attempt[16], hex[20];
    keys_verp(&w->sh->keys, ref, key, sizeof key);
    keys_verp_msgid(&w->sh->keys, j->message_id, mkey, sizeof mkey);
    snprintf(ttl, sizeof ttl, "%" PRId64, d->gen->cfg->inbound.index_ttl_ms);
    snprintf(attempt, sizeof attempt, "%u", j->attempt);
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)ref);
    const char *hset[] = {"HSET",         key,     "tenant", j->tenant ? j->tenant : "",
                          "id",           j->id ? j->id : "",  "ref", j->ref ? j->ref : "",
                          "to",           j->to ? j->to : "",  "message_id", j->message_id,
                          "attempt",      attempt, "entry", j->stream_id};
    const char *px[] = {"PEXPIRE", key, ttl};
    const char *mid[] = {"SET", mkey, hex, "PX", ttl};
    if (redis_client_command_argv(&w->notes, on_indexed, NULL, (int)HERALD_ARRAY_LEN(hset), hset,
                                  NULL) < 0 ||
        redis_client_command_argv(&w->notes, on_indexed, NULL, (int)HERALD_ARRAY_LEN(px), px,
                                  NULL) < 0 ||
        (j->message_id[0] && redis_client_command_argv(&w->notes, on_indexed, NULL,
                                                       (int)HERALD_ARRAY_LEN(mid), mid, NULL) < 0))
        log_event(LOG_WARN, "event=verp_index_failed job=%s reason=\"redis unavailable\"",
                  LOG_VALUE(delivery_job_id(d)));
}

const char *verp_return_path(struct delivery *d, const struct cfg_tenant *tenant, int64_t now_ms)
{
    const struct engine_gen *g = d->gen;
    if (!tenant || !tenant->return_path || !g || !g->verp_ok)
        return NULL;
    const struct job *j = &d->job;
    uint64_t ref = fb_job_ref(j->tenant ? j->tenant : "", j->id ? j->id : "");
    char token[FB_VERP_TOKEN_LEN + 1];
    uint16_t attempt = j->attempt > UINT16_MAX ? UINT16_MAX : (uint16_t)j->attempt;
    if (fb_verp_encode(&g->verp, ref, attempt, fb_day_of_ms(now_ms), token, sizeof token) < 0)
        return NULL;
    int n = snprintf(d->return_path, sizeof d->return_path, "%s%s@%s", FB_VERP_PREFIX, token,
                     tenant->return_path);
    if (n < 0 || (size_t)n >= sizeof d->return_path)
        return NULL;
    index_message(d, ref);
    return d->return_path;
}
