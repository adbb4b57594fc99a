/* feedback: what comes back after the 250. Signed tokens that name a job
 * (VERP return paths) or a recipient (one-click unsubscribe URLs), and a
 * parser for the reports that arrive at the return domain: DSNs (RFC 3464),
 * ARF complaints (RFC 5965), RFC 3834 auto-replies and the common
 * non-standard bounce texts.
 *
 * Everything here is pure: no I/O, no globals, no clock (days are passed
 * in), no allocation. Every input is taken as hostile; outputs are
 * fixed-size structs whose strings are NUL-terminated, bounded and free of
 * control bytes, with truncation flagged. Errors are 0 / negative errno /
 * -HERR_* (core.h). The formats are described in docs/feedback.md. */
#ifndef HERALD_FEEDBACK_H
#define HERALD_FEEDBACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "herald/core.h"

/* ---- keys ---------------------------------------------------------------- */

/* The deployment secret (read by the caller from its secret file). */
#define FB_SECRET_LEN 32

/* One subkey per token kind, derived from the secret, so a token of one
 * kind can never verify as the other even if its bytes were shaped to. */
struct fb_keys {
    uint8_t verp[32];  /* HMAC-SHA256(secret, "herald-verp-v1") */
    uint8_t unsub[32]; /* HMAC-SHA256(secret, "herald-unsub-v1") */
};

/* 0, or -EIO when OpenSSL fails. */
int fb_keys_derive(const uint8_t secret[FB_SECRET_LEN], struct fb_keys *out);

/* Read a secret file (FB_SECRET_LEN to FB_SECRET_FILE_MAX bytes, a
 * trailing newline not counted, not readable by group or others; `what`
 * names it in errors) into its SHA-256; fb_secret_load then derives the
 * subkeys from that. 0, or -errno / -HERR_CONFIG with the reason in why. */
#define FB_SECRET_FILE_MAX 4096
int fb_secret_digest(const char *path, const char *what, uint8_t out[FB_SECRET_LEN], char *why,
                     size_t whylen);
int fb_secret_load(const char *path, struct fb_keys *out, char *why, size_t whylen);

/* The 64-bit job reference a VERP token carries: the first 8 bytes
 * (big-endian) of SHA-256 over tenant, one NUL byte, id. */
uint64_t fb_job_ref(const char *tenant, const char *id);

/* Days since the unix epoch for a wall-clock time in ms (negative times
 * give day 0; the day wraps after 65535, in the year 2149). */
uint16_t fb_day_of_ms(int64_t wall_ms);

/* ---- VERP bounce tokens ----------------------------------------------------- */

/* The local part of a VERP address is FB_VERP_PREFIX then the token: 37
 * lowercase base32 characters (23 bytes: kind, job ref, attempt, day, MAC). */
#define FB_VERP_PREFIX    "b+"
#define FB_VERP_TOKEN_LEN 37
#define FB_VERP_LOCAL_LEN (sizeof FB_VERP_PREFIX - 1 + FB_VERP_TOKEN_LEN)

/* Writes the token (not the prefix) and a NUL into out; cap must be at
 * least FB_VERP_TOKEN_LEN + 1, else -ENOSPC. */
int fb_verp_encode(const struct fb_keys *keys, uint64_t ref, uint16_t attempt, uint16_t day,
                   char *out, size_t cap);

/* Verifies a token, given with or without the prefix, in any letter case
 * (receivers may fold local parts). Returns 0 and fills the outputs (any
 * may be NULL), or -HERR_MALFORMED (wrong length, alphabet, non-canonical
 * trailing bits, unknown kind), -HERR_BAD_MAC, -HERR_EXPIRED (issued more
 * than max_age_days before now_day) or -HERR_FUTURE (issued more than one
 * day after now_day). The MAC is checked before the dates, so the date
 * errors speak only of genuine tokens. */
int fb_verp_decode(const struct fb_keys *keys, const char *local, size_t len, uint16_t now_day,
                   uint16_t max_age_days, uint64_t *ref, uint16_t *attempt, uint16_t *day);

/* fb_verp_decode on the local part of "b+<token>@domain" (optionally in
 * angle brackets). The local part must start with FB_VERP_PREFIX (case
 * blind); the domain is not checked here: the listener accepts mail only
 * for its return domain. */
int fb_verp_from_address(const struct fb_keys *keys, const char *addr, size_t len, uint16_t now_day,
                         uint16_t max_age_days, uint64_t *ref, uint16_t *attempt, uint16_t *day);

/* ---- one-click unsubscribe tokens ------------------------------------------- */

#define FB_TENANT_MAX 64
#define FB_ADDR_MAX   254
/* Base64url of at most 1 + 2 + 1 + 64 + 1 + 254 + 16 = 339 bytes. */
#define FB_UNSUB_TOKEN_MAX 452

struct fb_unsub {
    char tenant[FB_TENANT_MAX + 1];
    char rcpt[FB_ADDR_MAX + 1];
    uint16_t day;
};

/* Writes the token (for the URL path /u/<token>) and a NUL into out.
 * -EINVAL when the tenant is not [A-Za-z0-9_.-]{1,64} or the recipient is
 * empty, longer than 254 octets, has a control byte, a space or no '@';
 * -ENOSPC when cap is too small (FB_UNSUB_TOKEN_MAX + 1 always fits). */
int fb_unsub_encode(const struct fb_keys *keys, const char *tenant, const char *rcpt, uint16_t day,
                    char *out, size_t cap);

/* Verifies a token with the error discipline of fb_verp_decode; a token
 * that verifies but names a tenant or recipient encode would refuse is
 * -HERR_MALFORMED. *out is zeroed unless 0 is returned. */
int fb_unsub_decode(const struct fb_keys *keys, const char *token, size_t len, uint16_t now_day,
                    uint16_t max_age_days, struct fb_unsub *out);

/* ---- reports -------------------------------------------------------------- */

enum fb_kind {
    FB_UNKNOWN = 0,
    FB_DSN,         /* multipart/report; report-type=delivery-status */
    FB_ARF,         /* multipart/report; report-type=feedback-report */
    FB_AUTOREPLY,   /* RFC 3834 or a common out-of-office mark */
    FB_BOUNCE_TEXT, /* a plain-text bounce from mail delivery software */
    FB_KIND_COUNT
};

enum fb_action {
    FB_ACTION_NONE = 0,
    FB_ACTION_FAILED,
    FB_ACTION_DELAYED,
    FB_ACTION_DELIVERED,
    FB_ACTION_RELAYED,
    FB_ACTION_EXPANDED,
    FB_ACTION_COUNT
};

enum fb_feedback_type {
    FB_FEEDBACK_NONE = 0, /* no Feedback-Type field */
    FB_FEEDBACK_ABUSE,
    FB_FEEDBACK_FRAUD,
    FB_FEEDBACK_VIRUS,
    FB_FEEDBACK_OTHER, /* "other", and any type this list does not know */
    FB_FEEDBACK_NOT_SPAM,
    FB_FEEDBACK_AUTH_FAILURE,
    FB_FEEDBACK_COUNT
};

/* Report flags: something was cut or skipped. The fields still hold what
 * was read. */
#define FB_F_TRUNCATED   0x01u /* a field was longer than its buffer */
#define FB_F_RCPTS_MORE  0x02u /* more recipients than FB_RCPTS_MAX */
#define FB_F_LIMIT       0x04u /* depth, part, header or decode bound hit */
#define FB_F_MIME_BROKEN 0x08u /* unterminated multipart, missing boundary */
#define FB_F_NO_HEADER   0x10u /* the input does not start with a header */

#define FB_RCPTS_MAX  8
#define FB_VERP_KEEP  4
#define FB_DIAG_MAX   300
#define FB_HOST_MAX   255
#define FB_DATE_MAX   63
#define FB_MSGID_MAX  250
#define FB_STATUS_MAX 11 /* "5.123.123" */

struct fb_rcpt {
    enum fb_action action;
    char status[FB_STATUS_MAX + 1]; /* "5.1.1", validated; "" when absent or invalid */
    /* The address after "rfc822;", only when it passes addr_check. */
    char final_recipient[FB_ADDR_MAX + 1];
    char original_recipient[FB_ADDR_MAX + 1];
    char diagnostic[FB_DIAG_MAX + 1]; /* Diagnostic-Code after its type, unfolded */
    char remote_mta[FB_HOST_MAX + 1];
};

struct fb_arf {
    enum fb_feedback_type feedback_type;
    char user_agent[128];
    char version[16];
    char original_mail_from[FB_ADDR_MAX + 1];
    char original_rcpt_to[FB_ADDR_MAX + 1];
    char arrival_date[FB_DATE_MAX + 1];
    char source_ip[48]; /* as given, when it is an IPv4 or IPv6 address */
    char reported_domain[FB_HOST_MAX + 1];
};

struct fb_report {
    enum fb_kind kind;
    unsigned flags; /* FB_F_* */
    /* DSN per-message fields */
    char reporting_mta[FB_HOST_MAX + 1];
    char arrival_date[FB_DATE_MAX + 1];
    /* DSN per-recipient entries, or the one entry a text bounce yields. */
    size_t n_rcpts;
    struct fb_rcpt rcpts[FB_RCPTS_MAX];
    struct fb_arf arf;
    /* Which mark made it an auto-reply ("auto-submitted", "x-autoreply",
     * "x-autorespond", "precedence", "subject"), "" otherwise. */
    char autoreply_mark[16];
    /* From the returned original (message/rfc822, text/rfc822-headers, or
     * the header block quoted in a text bounce). */
    bool has_original;
    char orig_message_id[FB_MSGID_MAX + 1]; /* without the angle brackets */
    char orig_return_path[FB_ADDR_MAX + 1];
    char orig_to[FB_ADDR_MAX + 1]; /* the first mailbox of To: */
    /* The report's own In-Reply-To (Exchange and Gmail DSNs and most
     * auto-replies set it to the original's Message-ID): the last way to
     * find the job when neither a token nor the original came back. */
    char in_reply_to[FB_MSGID_MAX + 1];
    /* VERP tokens seen, lower-cased, without the prefix, in the order:
     * envelope recipient, the report's own header, the report fields, the
     * original. Syntax only: verify each with fb_verp_decode. */
    size_t n_verp;
    char verp[FB_VERP_KEEP][FB_VERP_TOKEN_LEN + 1];
};

/* What the listener knows from the SMTP envelope; any field may be NULL.
 * mail_from "" is the null sender. */
struct fb_envelope {
    const char *mail_from;
    const char *rcpt_to;
};

/* Parses a whole received message (header and body, CRLF or LF line
 * ends). Never reads outside msg[0..len). Returns 0 with out->kind set
 * (FB_UNKNOWN when nothing was recognised), or -HERR_MALFORMED when the
 * input has no header at all (out->flags then has FB_F_NO_HEADER). Uses
 * about 50 KiB of stack. */
int fb_parse(const char *msg, size_t len, const struct fb_envelope *env, struct fb_report *out);

/* A failed action with a permanent (5.x.x) status. */
bool fb_is_hard(const struct fb_rcpt *r);

const char *fb_kind_name(enum fb_kind k);
const char *fb_action_name(enum fb_action a);
const char *fb_feedback_type_name(enum fb_feedback_type t);

#endif
