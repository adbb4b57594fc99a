/* Internal to src/inbound/: the report handler's context (report.c) as the
 * listener (listener.c) keeps it. */
#ifndef HERALD_INBOUND_INB_H
#define HERALD_INBOUND_INB_H

#include <stdbool.h>
#include <stdint.h>

#include "herald/feedback.h"
#include "herald/inbound.h"
#include "herald/keys.h"
#include "herald/redis.h"

#define INB_FIELD_MAX 512

struct inb_ctx {
    redisContext *rc; /* NULL while Redis is away (reconnected per report) */
    struct redis_addr addr;
    struct fb_keys keys;
    struct keys K;
    char events[256];
    int64_t index_ttl_ms;
    double complaint_rate; /* inbound.complaint_* */
    uint32_t complaint_min_delivered;
    int64_t complaint_suspend_ms;
    int64_t now_ms; /* of the report being handled */
    char last_tenant[INB_FIELD_MAX]; /* the tenant of the last report matched */
};

/* A job's details from the index (verp.c wrote them). */
struct inb_job {
    char tenant[INB_FIELD_MAX], id[INB_FIELD_MAX], ref[INB_FIELD_MAX], to[INB_FIELD_MAX];
    char message_id[INB_FIELD_MAX], attempt[INB_FIELD_MAX];
    bool redis_failed;
};

/* One accepted message: what it was, and the note it made (detail: a few
 * key=value words for the log line). c->rc must be connected. */
enum inbound_outcome inb_handle(struct inb_ctx *c, const char *mail_from, const char *rcpt,
                                const char *msg, size_t len, int64_t now_ms, char *detail,
                                size_t detail_cap);

#endif
