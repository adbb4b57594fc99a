/* Internal to the engine: admission, the one Redis script call a job makes
 * before it may take a connection (cancellation, idempotency, `replaces`,
 * suppression lists, recipient caps and the tenant's rate). */
#ifndef HERALD_ENGINE_ADMIT_H
#define HERALD_ENGINE_ADMIT_H

#include <stdbool.h>
#include <stdint.h>

enum admit_kind {
    ADMIT_NONE,       /* not asked yet */
    ADMIT_OK,         /* go: caps and rates are counted */
    ADMIT_WAIT,       /* a recipient cap or the tenant's rate: try again in wait_ms */
    ADMIT_CANCELLED,  /* a cancel or replacement entry ended it (by = that entry) */
    ADMIT_DUPLICATE,  /* the tenant already has this id (by = the first entry) */
    ADMIT_SUPPRESSED, /* on a suppression list (global or the tenant's) */
};

enum admit_limit { ADMIT_LIMIT_NONE, ADMIT_LIMIT_RECIPIENT_CAP, ADMIT_LIMIT_TENANT_RATE };

struct admit_verdict {
    enum admit_kind kind;
    enum admit_limit limit; /* WAIT: which one */
    int64_t wait_ms;        /* WAIT: 0 .. 10^15 - 1 */
    bool global;            /* SUPPRESSED: on the global list, not the tenant's */
    char by[48];            /* CANCELLED / DUPLICATE: the other entry */
    char replaced[32];      /* OK: what happened to the job this one `replaces` ("" none) */
};

/* Parse the admission script's reply text (scripts.c documents the forms).
 * Pure; returns 0, or -HERR_MALFORMED for a reply it does not know (v is
 * then kind ADMIT_NONE). */
int admit_parse(const char *reply, struct admit_verdict *v);
/* Whether the job id was claimed for this entry (its later copies pass the
 * idempotency check) and whether caps and rates were counted for it. */
static inline bool admit_claimed(const struct admit_verdict *v)
{
    return v->kind == ADMIT_OK || v->kind == ADMIT_WAIT;
}

struct delivery;
struct worker;
/* Ask for d's admission (d: DECODING -> ADMITTING); its verdict moves it
 * on. The request joins the worker's batch: it goes to Redis with the
 * others at admit_flush (or at once when the batch is full), one script
 * call for the lot, one verdict per job back in order. A job may leave
 * here (DX_LEFT, out of memory) before admit_send returns. */
void admit_send(struct delivery *d);
/* Send the batch asked for so far as one script call. Every caller of
 * admit_send flushes before its handler returns, so no job waits in the
 * batch for a later event. */
void admit_flush(struct worker *w);
/* Shutdown: drop the batch buffer (the jobs were already left). */
void admit_free(struct worker *w);

#endif
