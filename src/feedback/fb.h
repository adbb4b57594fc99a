/* Internal to src/feedback: the MIME reading the report parser stands on
 * (mime.c), the field parsers for delivery-status and feedback-report
 * blocks (fields.c) and the plain-text bounce heuristics (text.c). */
#ifndef HERALD_FEEDBACK_INTERNAL_H
#define HERALD_FEEDBACK_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include "herald/feedback.h"

/* Bounds on hostile input. Work stays linear in the message size times
 * FB_DEPTH_MAX; each bound hit sets FB_F_LIMIT. */
#define FB_DEPTH_MAX    8     /* multipart nesting */
#define FB_PARTS_MAX    64    /* entities in the whole message */
#define FB_HEADER_MAX   65536 /* bytes of one header block that are read */
#define FB_FIELDS_MAX   256   /* fields of one header block that are read */
#define FB_BLOCKS_MAX   64    /* field blocks of a delivery-status part */
#define FB_SCRATCH      32768 /* decoded bytes of one base64/QP part */
#define FB_TEXT_MAX     65536 /* bytes of a plain text part scanned */
#define FB_BOUNDARY_MAX 200   /* RFC 2046 says 70; some send more */
#define FB_VALUE_MAX    1024  /* one unfolded field value */

struct fb_field {
    const char *name, *value;
    size_t name_len, value_len; /* value: raw, folding included */
};

/* Fields of one header block: lines up to the first empty line (CRLF or
 * LF). A line that is not "name: value" is skipped. */
struct fb_hdr_iter {
    const char *p, *end, *start;
    size_t n_fields;
    bool limited; /* FB_HEADER_MAX or FB_FIELDS_MAX passed: rest skipped */
    bool done;    /* the empty line (or the end) was reached */
};

void fb_hdr_begin(struct fb_hdr_iter *it, const char *p, size_t n);
/* 1 with *f set, or 0 at the end of the block; it->p is then the first
 * byte after the empty line. */
int fb_hdr_next(struct fb_hdr_iter *it, struct fb_field *f);
bool fb_name_is(const struct fb_field *f, const char *name);

/* Unfolded, whitespace-collapsed, trimmed copy of v without control bytes;
 * valid UTF-8 is kept, other bytes >= 0x80 become '?'. Sets *trunc when it
 * did not fit. Returns the length (out is NUL-terminated, cap >= 1). */
size_t fb_clean(char *out, size_t cap, const char *v, size_t n, bool *trunc);

/* v with RFC 2047 encoded words (B and Q) decoded; the charset is not
 * converted (UTF-8 is what matters here). Returns the length; out is
 * NUL-terminated (cap >= 1) and may hold any byte: fb_clean it. */
size_t fb_decode_words(const char *v, size_t n, char *out, size_t cap);

/* Lower-case ASCII in place. */
void fb_lower(char *s);

struct fb_ctype {
    char type[32], sub[64]; /* lower case; "text"/"plain" when absent */
    char boundary[FB_BOUNDARY_MAX + 1];
    char report_type[40]; /* lower case */
};
void fb_ctype_parse(const char *v, size_t n, struct fb_ctype *ct);

enum fb_cte { FB_CTE_IDENTITY, FB_CTE_BASE64, FB_CTE_QP };
enum fb_cte fb_cte_parse(const char *v, size_t n);
/* Decode p[0..n) into out (at most cap bytes); *trunc when cut. */
size_t fb_decode(enum fb_cte cte, const char *p, size_t n, char *out, size_t cap, bool *trunc);

/* Body parts of a multipart body. */
struct fb_multipart {
    const char *p, *end;
    const char *boundary;
    size_t boundary_len;
    bool started, finished;
    bool broken; /* no opening delimiter, or no closing one */
};
void fb_multipart_begin(struct fb_multipart *m, const char *body, size_t n, const char *boundary);
/* 1 with the next part in [*part, *part + *len), or 0 when there is none. */
int fb_multipart_next(struct fb_multipart *m, const char **part, size_t *len);

/* The first enhanced status code (RFC 3463: class 2, 4 or 5, subject and
 * detail of 1-3 digits) in s[0..n) standing alone (not inside a longer
 * run of digits and dots). Copies it to out (FB_STATUS_MAX + 1) and
 * returns true. `at_start` asks for one at s[0] only. */
bool fb_find_status(const char *s, size_t n, bool at_start, char *out);

/* The addr-spec of a header-ish value: inside the first <...> outside
 * quotes and comments, else the first word; kept only when addr_check
 * accepts it. "<>" and anything else give false with out "". */
bool fb_take_addr(const char *v, size_t n, char *out, size_t cap);

/* Per-message extras of a delivery-status part the walker wants. */
struct fb_dsn_extra {
    char envid[128];              /* Original-Envelope-Id, cleaned */
    char msgid[FB_MSGID_MAX + 1]; /* X-Original-Message-ID (Gmail) */
};
void fb_dsn_fields(struct fb_report *out, const char *p, size_t n, struct fb_dsn_extra *x);
void fb_arf_fields(struct fb_report *out, const char *p, size_t n);

/* What a plain-text bounce says. */
struct fb_text {
    bool qmail, exim, daemon_words, permanent, temporary;
    char status[FB_STATUS_MAX + 1];
    char rcpt[FB_ADDR_MAX + 1];
    char diag[FB_DIAG_MAX + 1];
    const char *orig; /* a quoted header block after the explanation */
    size_t orig_len;
};
void fb_text_scan(const char *p, size_t n, struct fb_text *t, unsigned *flags);

#endif
