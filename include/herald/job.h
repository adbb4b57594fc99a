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

/* Where the message content came from. Template jobs are rendered into
 * subject/text/html by job_parse, so the builder treats them as literal. */
enum job_kind { JOB_KIND_LITERAL = 0, JOB_KIND_TEMPLATE, JOB_KIND_RAW };

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
    const char *to;       /* recipient mailbox as given, validated (notes show this) */
    /* The next three come from one addr_normalize of `to` (struct
     * addr_norm), so routing, envelope and keys name the same mailbox. */
    const char *rcpt;       /* envelope recipient: local part as given, '@', lower-case
                             * A-label domain (addr_norm.wire); RCPT TO and To: */
    const char *to_domain;  /* the domain part of rcpt: routing, MX, typo check */
    const char *to_key;     /* recipient key: rcpt with the local part's ASCII capitals
                             * folded (addr_norm.key). Use it, not `to`, for suppression
                             * lookups and adds, recipient caps and anything else keyed
                             * by recipient; `herald suppress` writes the same form */
    const char *mail_from;  /* envelope sender: addr_norm.wire of `from` */
    const char *suggestion; /* "user@gmail.com" when `to` looks like a typo (policy warn) */
    const char *ref;
    const char *from;     /* envelope + header From; tenant default when absent */
    const char *from_name;
    const char *reply_to;
    const char *subject;
    const char *text;
    const char *html;
    const char *template_name; /* template jobs: the tenant template used */
    const char *raw;      /* raw jobs: the message as given (checked by raw_check) */
    const char *header_from_domain; /* raw jobs: the domain of the message's own From
                                     * (what receivers align DKIM and DMARC with) */
    bool from_rewritten; /* from_fallback: rewrite applied: From is sender.address (a raw
                          * message's own From field too), the tenant's in Reply-To */
    size_t raw_len;
    enum job_kind kind;
    const char *unsubscribe;
    /* Set by the caller of job_build, not by job_parse: the signed one-click
     * link (RFC 8058) of a tenant with one_click_unsubscribe, rendered first
     * in List-Unsubscribe with List-Unsubscribe-Post. NULL = none. */
    const char *oneclick_url;
    const char *replaces;
    const char *cancel;
    enum job_priority priority;
    int64_t send_at_ms;    /* 0 = now */
    int64_t expires_at_ms; /* 0 = never */
    int64_t enqueued_ms;   /* from the stream id, or the `enqueued_at` field on retries */
    uint32_t attempt;      /* 1 on first delivery; `attempt` field + 1 on retries */
    bool needs_smtputf8;   /* the envelope or a header keeps UTF-8: a UTF-8 local part in
                            * to/from/reply_to (IDN domains alone go out as A-labels) */

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
/* Fields herald writes on the copies of a job it puts back into the stream
 * (retries, scheduled and parked jobs): they skip idempotency, recipient
 * caps and tenant rates, or keep max_age and the Message-ID. A producer
 * cannot set them: an entry that carries one is taken only when the job's
 * state says herald moved exactly that entry (intake.c), and `herald
 * enqueue` refuses them. */
extern const char *const job_herald_fields[];
extern const size_t job_n_herald_fields;
/* The first of job_herald_fields the entry carries, or NULL. */
const char *job_herald_field(const struct job *j);
/* The domain of the From header the receiver will see: a raw message's
 * own (after any rewrite), else that of j->from. "" when there is none. */
const char *job_header_from_domain(const struct job *j);
void job_clear(struct job *j);
/* Like job_clear, but keeps the memory of the wire buffer and one arena
 * chunk (when small) for the next job decoded into j: a pooled delivery
 * decodes and builds without malloc. */
void job_recycle(struct job *j);

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

/* Build the message into j->wire. For raw jobs: Date and Message-ID are
 * added when missing, the rest is the caller's bytes, normalised. Every
 * kind ends as the same j->wire (CRLF, dot-stuffed, terminated): a signer
 * (DKIM) works on that after job_build, whatever the kind.
 *
 * Literal and template jobs: headers (Date, Message-ID, MIME-Version, From, To,
 * Reply-To, Subject RFC 2047 when non-ASCII, List-Unsubscribe), body as
 * text/plain, text/html or multipart/alternative, quoted-printable, CRLF,
 * dot-stuffed, terminated. msgid_domain is the right-hand side of the
 * Message-ID. now_wall_ms feeds Date. Returns 0 or -HERR_TOO_LONG /
 * -HERR_MALFORMED with *err filled. */
int job_build(struct job *j, const struct cfg_tenant *tenant, const char *msgid_domain,
              int64_t now_wall_ms, size_t max_message_bytes, struct job_error *err);
/* job_build keeps one scratch buffer per thread for the next message; a
 * thread that built messages frees it with this before it exits. */
void job_build_thread_done(void);

/* A Message-ID (without brackets) herald will reuse: printable ASCII, no
 * space, quote, backslash or angle bracket, exactly one '@' inside. */
bool msg_id_acceptable(const char *id);

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

/* A domain (UTF-8 U-labels and/or ASCII) as lower-case A-labels, IDNA2008
 * through libidn2 with UTS #46 non-transitional mapping (NFC, case folding;
 * ß stays ß, see src/msg/idna.c for why there is no transitional fallback).
 * ASCII labels that are not "xn--" labels are only lower-cased; "xn--"
 * labels are checked like U-labels. len excludes any NUL. Returns 0;
 * -EILSEQ when the name fails IDNA2008 (*why is libidn2's reason, a static
 * string); -HERR_MALFORMED when the result is not LDH host-name labels (or
 * empty, or has a NUL); -HERR_TOO_LONG when a label is over 63 or the domain
 * over 253 octets as A-labels, or it does not fit in cap; all with *why.
 * -ENOMEM. */
int idna_domain_to_ascii(const char *d, size_t len, char *out, size_t cap, const char **why);

/* Room for a normalised address: 64-octet local part, '@', 253-octet
 * A-label domain, NUL; the result itself is held to 254 octets. */
#define ADDR_NORM_MAX 320

/* One mailbox in the forms herald uses: `wire` is the envelope form
 * (RCPT TO, MAIL FROM, the To header), `key` the form every lookup keyed
 * by recipient uses (suppression lists, recipient caps, any per-recipient
 * idempotency). Both have the domain as lower-case A-labels (an address
 * literal lower-cased), so "Anna@BÜCHER.example" and "anna@bücher.example"
 * share the key "anna@xn--bcher-kva.example". */
struct addr_norm {
    char wire[ADDR_NORM_MAX]; /* local part exactly as given, '@', A-label domain */
    char key[ADDR_NORM_MAX];  /* wire with ASCII capitals of the local part folded */
    size_t local_len;         /* wire[local_len] == key[local_len] == '@' */
    bool needs_smtputf8;      /* the local part has UTF-8 */
};

/* addr_check, then the domain through idna_domain_to_ascii. The only
 * normalisation herald applies to an address: job_parse and `herald
 * suppress` both use it. Returns 0; -HERR_MALFORMED (syntax, or the
 * A-label form over 254 octets) or -HERR_TOO_LONG with *why; -EILSEQ when
 * the domain is not a valid IDNA2008 name (*why from libidn2); -ENOMEM. */
int addr_normalize(const char *addr, size_t len, struct addr_norm *out, const char **why);

/* The built-in list of large mailbox providers (NULL-terminated) and the
 * check against a list: the listed domain `domain` is probably a typo of
 * (Damerau-Levenshtein distance 1, or 2 for names of 12+ characters), or
 * NULL when it is listed itself or near none. Case-insensitive. */
extern const char *const typo_default_domains[];
const char *typo_suggest(const char *domain, const char *const *list, size_t n_list);

/* What raw_check learnt about a message. Values point into the message
 * and run to the end of their (folded) field, line breaks included. */
struct raw_info {
    size_t header_len; /* header section, blank line included */
    bool has_from, has_to, has_date, has_message_id, has_subject, has_sender, has_reply_to;
    const char *from_value;
    size_t from_len;
    const char *sender_value;
    size_t sender_len;
    const char *msgid_value;
    size_t msgid_len;
};

/* Check a complete RFC 5322 message: header fields (name of printable
 * ASCII, colon, folded continuation lines), exactly one From, at most one
 * Date/Message-ID/Subject, no line over 998 octets, no NUL, 7-bit only.
 * Line endings may be CRLF, LF or CR. Returns 0 or -HERR_MALFORMED with a
 * reason ("line 3: ...") in why. */
int raw_check(const char *msg, size_t len, struct raw_info *info, char *why, size_t why_cap);
/* An RFC 5322 address-list header value (From:, Sender:, To:): how many
 * mailboxes and groups it holds and, for the first ADDRLIST_KEEP
 * mailboxes, the domain (lower-cased; a domain literal keeps its
 * brackets) and whether it sits in a group. */
#define ADDRLIST_KEEP 8
struct addrlist {
    size_t n_mailboxes, n_groups;
    char domains[ADDRLIST_KEEP][256];
    bool in_group[ADDRLIST_KEEP];
};
/* 0, or -HERR_MALFORMED when the value is not an address list (a name
 * without an address, an unclosed comment, quote or bracket, ...), or
 * -HERR_TOO_LONG for a domain over 255 bytes. Line breaks of folding are
 * whitespace. */
int addrlist_parse(const char *v, size_t n, struct addrlist *out);
/* The From domain a raw message speaks for, checked against the tenant's
 * `domains` (allowed(domain, arg) says whether one is the tenant's): From
 * is a list of mailboxes, not a group; every mailbox is the tenant's;
 * several need a Sender that is one tenant mailbox (RFC 5322 3.6.2), and a
 * Sender is always the tenant's. 0 with the first mailbox's domain in out,
 * or -HERR_MALFORMED with the reason in why. */
int raw_from_domain(const struct raw_info *info, bool (*allowed)(const char *domain, void *arg),
                    void *arg, char *out, size_t cap, char *why, size_t why_cap);
/* The id inside <...> of a Message-ID value. */
int raw_message_id(const char *v, size_t n, char *out, size_t cap);

#endif
