/* Internal to src/msg: helpers shared by the job decoder, the address check
 * and the message builder. Not part of the public API. */
#ifndef HERALD_MSG_INTERNAL_H
#define HERALD_MSG_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "herald/core.h"

/* Length of the well-formed UTF-8 sequence at s (1..4), or 0 when s does
 * not start one (stray continuation, overlong form, surrogate, > U+10FFFF,
 * truncated). n is the number of bytes available, at least 1. */
/* Next item of a comma-separated list such as the unsubscribe field: skips
 * separators and blanks, strips one pair of angle brackets, never yields an
 * empty item. [*start, *end) is the item; false when the list is done. */
bool msg_list_next(const char *v, size_t len, size_t *pos, size_t *start, size_t *end);

size_t msg_utf8_seq_len(const unsigned char *s, size_t n);

/* Append a display name as an RFC 5322 phrase: atoms when plain ASCII, a
 * quoted-string when it has specials, RFC 2047 encoded words otherwise.
 * `used` is the column the phrase starts at. */
int msg_append_phrase(struct hbuf *out, const char *src, size_t len, size_t used);

/* Base64 body of text (line breaks canonicalised to CRLF first), 76
 * columns per line, each line ending in CRLF. */
int msg_append_base64_text(struct hbuf *out, const char *src, size_t len);
/* Whether base64 is the smaller transfer encoding for this body. */
bool msg_prefers_base64(const char *src, size_t len);

/* Unix milliseconds from a decimal integer or an RFC 3339 date-time
 * ("2026-11-22T10:00:00Z", "...T10:00:00.250+01:00"). Returns 0 or
 * -HERR_MALFORMED. */
int msg_parse_time_ms(const char *s, size_t len, int64_t *out_ms);

/* RFC 5322 date in UTC: "Sun, 22 Nov 2026 10:00:00 +0000". out needs 32
 * bytes. */
void msg_format_date(char *out, size_t outlen, int64_t wall_ms);

#endif
