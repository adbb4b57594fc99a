/* Byte-level encoders for the message builder: dot-stuffing with line-ending
 * normalisation (the SMTP smuggling defence), quoted-printable bodies and
 * RFC 2047 encoded words for header text. */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "herald/job.h"
#include "msg/msg.h"

#define HDR_FOLD_COLS    78  /* RFC 5322 "SHOULD" line length */
#define QP_MAX_COLS      76  /* RFC 2045 encoded line limit, soft-break '=' included */
#define EW_MAX_LEN       75  /* RFC 2047 encoded-word limit */
#define EW_OVERHEAD      12  /* "=?utf-8?Q?" + "?=" */
#define EW_MIN_PAYLOAD   16  /* below this, fold first: a 4-byte char needs 12 in Q */
#define PLAIN_HEADER_MAX 900 /* longer unencoded text could not fold under 998 */
#define PLAIN_PHRASE_MAX 700
#define B64_LINE_BYTES   57  /* 76 base64 characters per line */ /* leaves room for "From: " and a 254-byte address */

static const char hex_upper[] = "0123456789ABCDEF";

/* Every CR, LF and CRLF becomes CRLF and a '.' opening a line is doubled, so
 * the output holds no line ending but CRLF and no "CRLF . CRLF" — whatever
 * bytes a job carries, it cannot end DATA early. Whether we are at a line
 * start is read from `out`, so the function may be called on pieces. */
int msg_append_dotstuffed(struct hbuf *out, const char *src, size_t len)
{
    /* Worst case: every byte is a bare CR or LF (2 out) or a '.' after one. */
    if (len > SIZE_MAX / 4) return -ENOMEM;
    int rc = hbuf_reserve(out, len * 2 + 2);
    if (rc) return rc;
    char *o = out->data + out->len;
    bool bol = out->len == 0 || out->data[out->len - 1] == '\n';
    for (size_t i = 0; i < len; i++) {
        char c = src[i];
        if (c == '\r' || c == '\n') {
            if (c == '\r' && i + 1 < len && src[i + 1] == '\n') i++;
            *o++ = '\r';
            *o++ = '\n';
            bol = true;
            continue;
        }
        if (bol && c == '.') *o++ = '.';
        *o++ = c;
        bol = false;
    }
    out->len = (size_t)(o - out->data);
    out->data[out->len] = '\0';
    return 0;
}

/* Text for a base64 part: line breaks are canonicalised to CRLF first
 * (RFC 2045 6.8: text is encoded in canonical form), then encoded in lines
 * of 76 characters. */
int msg_append_base64_text(struct hbuf *out, const char *src, size_t len)
{
    struct hbuf canon;
    hbuf_init(&canon);
    int rc = hbuf_reserve(&canon, len + len / 2 + 2);
    for (size_t i = 0; rc == 0 && i < len; i++) {
        if (src[i] == '\r' || src[i] == '\n') {
            if (src[i] == '\r' && i + 1 < len && src[i + 1] == '\n') i++;
            rc = hbuf_append(&canon, "\r\n", 2);
        } else {
            rc = hbuf_append_char(&canon, src[i]);
        }
    }
    for (size_t i = 0; rc == 0 && i < canon.len; i += B64_LINE_BYTES) {
        size_t n = canon.len - i < B64_LINE_BYTES ? canon.len - i : B64_LINE_BYTES;
        if ((rc = hbuf_append_base64(out, canon.data + i, n)) == 0)
            rc = hbuf_append(out, "\r\n", 2);
    }
    hbuf_free(&canon);
    return rc;
}

bool msg_prefers_base64(const char *src, size_t len)
{
    size_t n_high = 0;
    for (size_t i = 0; i < len; i++)
        n_high += (unsigned char)src[i] >= 0x80;
    /* QP spends 3 bytes per 8-bit byte, base64 4 per 3 of anything: base64
     * is smaller once more than about a sixth of the bytes are 8-bit. */
    return n_high * 6 > len;
}

static bool is_line_break(char c)
{
    return c == '\r' || c == '\n';
}

/* Quoted-printable over text: the input's line breaks (any kind) become
 * CRLF hard breaks, so they survive as line breaks rather than as =0D=0A. */
int msg_append_qp(struct hbuf *out, const char *src, size_t len)
{
    char line[QP_MAX_COLS + 4];
    size_t col = 0;
    int rc;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)src[i];
        if (is_line_break((char)c)) {
            if (c == '\r' && i + 1 < len && src[i + 1] == '\n') i++;
            line[col++] = '\r';
            line[col++] = '\n';
            if ((rc = hbuf_append(out, line, col))) return rc;
            col = 0;
            continue;
        }
        bool at_eol = i + 1 == len || is_line_break(src[i + 1]);
        bool ws = c == ' ' || c == '\t';
        char tok[3];
        size_t t;
        /* "From " opening a line is mangled to ">From " by mbox-minded
         * relays; encoding its F keeps the text intact. */
        bool from_line = col == 0 && c == 'F' && len - i >= 5 && memcmp(src + i, "From ", 5) == 0;
        if (c == '=' || c > 126 || (c < 32 && c != '\t') || (ws && at_eol) || from_line) {
            tok[0] = '=';
            tok[1] = hex_upper[c >> 4];
            tok[2] = hex_upper[c & 15];
            t = 3;
        } else {
            tok[0] = (char)c;
            t = 1;
        }
        /* Mid-line the last column is kept for the soft-break '='. */
        size_t limit = at_eol ? QP_MAX_COLS : QP_MAX_COLS - 1;
        if (col + t > limit) {
            line[col++] = '=';
            line[col++] = '\r';
            line[col++] = '\n';
            if ((rc = hbuf_append(out, line, col))) return rc;
            col = 0;
        }
        memcpy(line + col, tok, t);
        col += t;
    }
    return col ? hbuf_append(out, line, col) : 0;
}

/* Characters that may stand for themselves in a Q-encoded word in every
 * context (RFC 2047 5(3), the strictest: inside a phrase). */
static bool q_safe(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '!' ||
           c == '*' || c == '+' || c == '-' || c == '/';
}

static size_t q_cost(unsigned char c)
{
    return q_safe(c) || c == ' ' ? 1 : 3;
}

/* One character for chunking purposes: a whole UTF-8 sequence, or a single
 * byte when the input is not valid UTF-8 there. */
static size_t char_len(const char *s, size_t n)
{
    size_t k = msg_utf8_seq_len((const unsigned char *)s, n);
    return k ? k : 1;
}

/* Encode all of src as a run of encoded words starting at column *col,
 * folding between words so lines stay within 78 columns. Words end on
 * character boundaries, so no word holds half a UTF-8 sequence. */
static int append_encoded_words(struct hbuf *out, const char *src, size_t len, size_t col)
{
    size_t n_esc = 0;
    for (size_t i = 0; i < len; i++)
        n_esc += q_cost((unsigned char)src[i]) == 3;
    /* Q unless it comes out much longer than base64: mostly-ASCII text
     * stays readable in raw form and in naive clients. */
    size_t b_len = (len + 2) / 3 * 4;
    bool use_q = len + 2 * n_esc <= b_len + b_len / 2;
    size_t i = 0;
    bool first = true;
    int rc;
    while (i < len) {
        size_t lead = first ? 0 : 1;
        size_t cap =
            col + lead + EW_OVERHEAD < HDR_FOLD_COLS ? HDR_FOLD_COLS - col - lead - EW_OVERHEAD : 0;
        if (cap > EW_MAX_LEN - EW_OVERHEAD) cap = EW_MAX_LEN - EW_OVERHEAD;
        if (cap < EW_MIN_PAYLOAD && col > 1) {
            if ((rc = hbuf_append(out, "\r\n ", 3))) return rc;
            col = 1;
            cap = EW_MAX_LEN - EW_OVERHEAD;
        } else if (!first) {
            if ((rc = hbuf_append_char(out, ' '))) return rc;
            col++;
        }
        /* Take whole characters while they fit in cap. */
        size_t end = i, cost = 0;
        while (end < len) {
            size_t k = char_len(src + end, len - end);
            size_t c = 0;
            if (use_q) {
                for (size_t m = 0; m < k; m++)
                    c += q_cost((unsigned char)src[end + m]);
                if (cost + c > cap) break;
                cost += c;
            } else {
                if ((end + k - i + 2) / 3 * 4 > cap) break;
            }
            end += k;
        }
        if (end == i) /* cannot happen with cap >= EW_MIN_PAYLOAD; stay safe */
            end = i + 1;
        size_t before = out->len;
        if ((rc = hbuf_append_str(out, use_q ? "=?utf-8?Q?" : "=?utf-8?B?"))) return rc;
        if (use_q) {
            for (size_t m = i; m < end; m++) {
                unsigned char c = (unsigned char)src[m];
                if (c == ' ') {
                    rc = hbuf_append_char(out, '_');
                } else if (q_safe(c)) {
                    rc = hbuf_append_char(out, (char)c);
                } else {
                    char e[3] = {'=', hex_upper[c >> 4], hex_upper[c & 15]};
                    rc = hbuf_append(out, e, 3);
                }
                if (rc) return rc;
            }
        } else if ((rc = hbuf_append_base64(out, src + i, end - i))) {
            return rc;
        }
        if ((rc = hbuf_append(out, "?=", 2))) return rc;
        col += out->len - before;
        i = end;
        first = false;
    }
    return 0;
}

static bool is_plain_header_char(unsigned char c)
{
    return (c >= 0x20 && c <= 0x7e) || c == '\t';
}

/* Printable ASCII that cannot be mistaken for an encoded word stays as is. */
static bool needs_encoding(const char *src, size_t len, size_t max_plain)
{
    if (len > max_plain) return true;
    for (size_t i = 0; i < len; i++) {
        if (!is_plain_header_char((unsigned char)src[i])) return true;
        if (src[i] == '=' && i + 1 < len && src[i + 1] == '?') return true;
    }
    return false;
}

/* Unstructured header text (Subject). Plain text folds before whitespace
 * (lossless: unfolding removes only the CRLF); anything else becomes encoded
 * words. */
int msg_append_header_text(struct hbuf *out, const char *src, size_t len, size_t used)
{
    if (needs_encoding(src, len, PLAIN_HEADER_MAX))
        return append_encoded_words(out, src, len, used);
    int rc = hbuf_reserve(out, len + len / 20 * 2 + 2);
    if (rc) return rc;
    size_t col = used;
    bool line_has_text = used > 0;
    for (size_t i = 0; i < len; i++) {
        char c = src[i];
        bool ws = c == ' ' || c == '\t';
        if (ws && line_has_text) {
            size_t j = i + 1;
            while (j < len && src[j] != ' ' && src[j] != '\t')
                j++;
            if (j > i + 1 && col + (j - i) > HDR_FOLD_COLS) {
                if ((rc = hbuf_append(out, "\r\n", 2))) return rc;
                col = 0;
                line_has_text = false;
            }
        }
        if ((rc = hbuf_append_char(out, c))) return rc;
        col++;
        if (!ws) line_has_text = true;
    }
    return 0;
}

static bool is_atext(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           (c != 0 && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

/* Atoms separated by single spaces read back exactly as written; anything
 * else (specials, runs of spaces, edges) needs quoting to survive. */
static bool is_plain_phrase(const char *src, size_t len)
{
    if (len == 0 || src[0] == ' ' || src[len - 1] == ' ') return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)src[i];
        if (c == ' ') {
            if (src[i + 1] == ' ') return false;
        } else if (!is_atext(c)) {
            return false;
        }
    }
    return true;
}

int msg_append_phrase(struct hbuf *out, const char *src, size_t len, size_t used)
{
    size_t n_esc = 0;
    for (size_t i = 0; i < len; i++)
        n_esc += src[i] == '"' || src[i] == '\\';
    bool has_tab = memchr(src, '\t', len) != NULL;
    /* The escaped length decides: a name of quotes doubles when quoted. */
    if (has_tab || len + n_esc > PLAIN_PHRASE_MAX || needs_encoding(src, len, PLAIN_PHRASE_MAX))
        return append_encoded_words(out, src, len, used);
    if (is_plain_phrase(src, len)) return hbuf_append(out, src, len);
    int rc = hbuf_reserve(out, len * 2 + 2);
    if (rc) return rc;
    hbuf_append_char(out, '"');
    for (size_t i = 0; i < len; i++) {
        if (src[i] == '"' || src[i] == '\\') hbuf_append_char(out, '\\');
        hbuf_append_char(out, src[i]);
    }
    return hbuf_append_char(out, '"');
}

bool msg_list_next(const char *v, size_t len, size_t *pos, size_t *start, size_t *end)
{
    size_t i = *pos;
    for (;;) {
        while (i < len && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        if (i >= len) {
            *pos = i;
            return false;
        }
        size_t s = i;
        while (i < len && v[i] != ',')
            i++;
        size_t e = i;
        while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
            e--;
        if (e > s + 1 && v[s] == '<' && v[e - 1] == '>') {
            s++;
            e--;
        }
        if (e > s) {
            *pos = i;
            *start = s;
            *end = e;
            return true;
        }
    }
}
