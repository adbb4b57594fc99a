/* Internal to the engine: case notes. Building a note's fields, and the
 * script calls that write a note together with the job's acknowledgement
 * (terminal), its return to the retry set (defer/park) or a cancel entry;
 * notes Redis did not answer are parked and sent again on reconnect. */
#ifndef HERALD_ENGINE_NOTES_H
#define HERALD_ENGINE_NOTES_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stdint.h>

#include "herald/job.h"
#include "herald/pool.h"
#include "herald/smtp.h"
#include "delivery.h"

enum note_event {
    EV_DELIVERED,
    EV_DEFERRED,
    EV_BOUNCED,
    EV_EXPIRED,
    EV_SUPPRESSED,
    EV_REJECTED,
    EV_DUPLICATE,
    EV_CANCELLED,
    EV_COUNT
};
const char *note_event_name(enum note_event ev);
static inline bool note_event_terminal(enum note_event ev)
{
    return ev != EV_DEFERRED;
}

#define NOTE_MAX_ITEMS 96

/* A note's field/value pairs, pointing at strings that outlive the write
 * (the job's, the result's, or the note's own number buffers). */
struct note {
    enum note_event ev;
    const char *argv[NOTE_MAX_ITEMS];
    size_t lens[NOTE_MAX_ITEMS];
    int argc;
    char nums[12][24];
    int n_nums;
};

/* Start a note with the fields every note carries (who, which attempt,
 * when, how long since enqueue). */
void note_begin(struct note *n, const struct delivery *d, enum note_event ev, int64_t now);
void note_add(struct note *n, const char *name, const char *value);
void note_add_int(struct note *n, const char *name, int64_t v);
/* The SMTP side: code, enhanced, reply, category, stage, mx, addresses, TLS. */
void note_smtp(struct note *n, const struct config *cfg, const struct smtp_result *res,
               const struct pool_conn_info *info, const char *message_id);

/* Terminal note + XACK + XDEL in one script call (d -> NOTING); with
 * suppress, the recipient joins the tenant's suppression list in the same
 * step. */
void notes_terminal(struct delivery *d, struct note *n, bool suppress);
/* Acknowledge the entry and put the job in the retry set until due_ms with
 * attempt_done attempts counted, optionally with a (deferred) note. */
void notes_defer(struct delivery *d, int64_t due_ms, uint32_t attempt_done, enum park_reason why,
                 struct note *n);
/* Back to the retry set without using an attempt (limits delay a message,
 * they do not fail it); never past the job's expiry. */
void notes_park(struct delivery *d, int64_t due_wall_ms, enum park_reason why, struct note *n);
/* A malformed job: its `rejected` note. */
void notes_reject(struct delivery *d, const struct job_error *err);
/* A `cancel` control entry: end its target and note what happened. */
void notes_cancel(struct delivery *d);

/* The notes connection is back: send every parked note again. */
void notes_resend_parked(struct worker *w);
/* Redis has lost our scripts (restart, failover, SCRIPT FLUSH): reconnect
 * the notes connection, which loads them again and re-sends parked notes. */
void notes_reload(struct worker *w, const char *why);
bool notes_scripts_missing(const redisReply *reply);

/* A Redis error that refuses the call for now (OOM, READONLY, BUSY, ...):
 * the note is parked and re-sent NOTES_RESEND_MS later by
 * notes_resend_due (called from the worker's tick). */
#define NOTES_RESEND_MS 1000
bool notes_transient_error(const redisReply *reply);
void notes_resend_due(struct worker *w, int64_t now);

#endif
