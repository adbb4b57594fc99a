/* job: one notification to one recipient, decoded from a Redis Stream entry,
 * validated, and built into the exact bytes that go after DATA. */
#ifndef HERALD_JOB_H
#define HERALD_JOB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "herald/config.h"
#include "herald/core.h"

enum job_priority { JOB_PRIO_NORMAL = 0, JOB_PRIO_HIGH, JOB_PRIO_BULK };

/* Why a job was rejected: the field at fault and a short human reason. */
struct job_error {
    char field[64];   /* e.g. "to", "subject", "tenant"; "" when not field-specific */
    char reason[192]; /* e.g. "missing", "contains CR or LF", "unknown tenant 'x'" */
};

/* Decoded job. All strings are NUL-terminated and live in `arena`; absent
 * optional fields are NULL. Owned by whoever called job_init(); job_clear()
 * releases everything. */
struct job {
    char stream_id[48];   /* entry id in the jobs stream this copy was read from */
    const char *id;       /* caller's id, or the first stream id this job had */
    const char *tenant;
    const char *to;       /* recipient mailbox, validated */
    const char *to_domain;/* lower-cased copy of the domain of `to` (arena) */
    const char *ref;
    const char *from;     /* envelope + header From; tenant default when absent */
    const char *from_name;
    const char *reply_to;
    const char *subject;
    const char *text;
    const char *html;
    const char *unsubscribe;
    const char *replaces;
    const char *cancel;
    enum job_priority priority;
    int64_t send_at_ms;    /* 0 = now */
    int64_t expires_at_ms; /* 0 = never */
    int64_t enqueued_ms;   /* from the stream id, or the `enqueued_at` field on retries */
    uint32_t attempt;      /* 1 on first delivery; `attempt` field + 1 on retries */
    bool needs_smtputf8;   /* to/from/reply_to has a UTF-8 local part or domain */

    /* The raw field list as received, kept so a retry can re-enqueue it. */
    size_t n_fields;
    const char **names;
    const char **values;
    size_t *value_lens;

    /* Filled by job_build(): DATA payload, CRLF line endings, dot-stuffed,
     * ending with "\r\n.\r\n". */
    struct hbuf wire;
    char message_id[160]; /* without angle brackets */

    struct arena arena;
};

/* Bounds on a stream entry, whatever the config says: work per job stays
 * bounded before any field is looked at. */
#define JOB_MAX_FIELDS 1024
#define JOB_MAX_NAME_BYTES 256
#define JOB_DEFAULT_MAX_FIELD_BYTES (1u << 20)
#define JOB_DEFAULT_MAX_MESSAGE_BYTES (10u << 20)

struct job_limits {
    size_t max_field_bytes;
    size_t max_message_bytes;
};

void job_init(struct job *j);
void job_clear(struct job *j);

/* Decode and validate the fields of a stream entry (names/values as received
 * from XREADGROUP; values may contain any bytes). Checks required fields,
 * tenant known (via cfg), address syntax, CR/LF/NUL in header-bound fields,
 * From within the tenant's domains, content choice (subject+text/html), sizes.
 * Returns 0, or -HERR_MALFORMED with *err filled (the job must be rejected),
 * or -ENOMEM. On success, j->tenant refers to a tenant that exists in cfg.
 * On rejection j->id is still set (the caller's id when it is clean, else
 * the stream id) and tenant/ref/to are set when their values were clean, so
 * the `rejected` note can name the job.
 * An empty value counts as an absent field. A `cancel` entry needs neither
 * content nor `to`. Unknown fields and var.* are kept in the raw list only.
 * Any earlier content of j is released first. */
int job_parse(struct job *j, const char *stream_id, size_t n_fields, const char *const *names,
              const size_t *name_lens, const char *const *values, const size_t *value_lens,
              const struct config *cfg, struct job_error *err);

/* Build the message: headers (Date, Message-ID, MIME-Version, From, To,
 * Reply-To, Subject RFC 2047 when non-ASCII, List-Unsubscribe), body as
 * text/plain, text/html or multipart/alternative, quoted-printable, CRLF,
 * dot-stuffed, terminated. msgid_domain is the right-hand side of the
 * Message-ID. now_wall_ms feeds Date. Returns 0 or -HERR_TOO_LONG /
 * -HERR_MALFORMED with *err filled. */
int job_build(struct job *j, const struct cfg_tenant *tenant, const char *msgid_domain,
              int64_t now_wall_ms, size_t max_message_bytes, struct job_error *err);

/* --- pieces exported for tests and fuzzing --- */

/* Test hook: the random source for Message-ID and the MIME boundary must
 * fill buf completely and return 0 or -errno. NULL restores getrandom(2).
 * Process-wide and not synchronised: set it before building messages. */
typedef int (*job_random_fn)(void *buf, size_t len);
void job_set_random(job_random_fn fn);

/* RFC 5321 mailbox check (dot-atom or quoted local part, domain of labels or
 * an address literal, length limits 64/255/254). UTF-8 local parts are
 * accepted with *needs_smtputf8 set. Returns 0 or -HERR_MALFORMED with why. */
int addr_check(const char *addr, size_t len, bool *needs_smtputf8, const char **why);

/* Append src to out with every line ending (CRLF, bare LF, bare CR) turned
 * into CRLF and every line starting with '.' given an extra '.'. Does not add
 * the final terminator. */
int msg_append_dotstuffed(struct hbuf *out, const char *src, size_t len);

/* Quoted-printable encode src (treated as text: line breaks become CRLF hard
 * breaks), soft-wrapping at 76 columns. */
int msg_append_qp(struct hbuf *out, const char *src, size_t len);

/* Append an RFC 2047 encoded-word form of a header value when it contains
 * non-ASCII, else the value as is; folds so no line exceeds 78 columns
 * given `used` columns already on the line. */
int msg_append_header_text(struct hbuf *out, const char *src, size_t len, size_t used);

#endif
