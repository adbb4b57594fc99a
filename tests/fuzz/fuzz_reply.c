/* Reply parser and EHLO capabilities under arbitrary bytes and splits.
 * The first byte picks the chunk size, so the fuzzer explores resumption
 * at every boundary; invariants are checked on every completed reply. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "herald/smtp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_reply(const struct smtp_reply *r)
{
    if (r->code < 200 || r->code > 599) abort();
    if (r->n_lines < 1 || r->n_lines > SMTP_REPLY_LINES_MAX) abort();
    if (r->text_len >= SMTP_REPLY_TEXT_MAX || strlen(r->text) != r->text_len) abort();
    size_t e = strnlen(r->enhanced, sizeof r->enhanced);
    if (e >= sizeof r->enhanced || (e && r->enhanced[0] != (char)('0' + r->code / 100))) abort();
    struct smtp_caps caps;
    smtp_caps_parse(&caps, r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) return 0;
    size_t chunk = (size_t)data[0] % 64 + 1;
    const char *buf = (const char *)data + 1;
    size_t len = size - 1;
    static struct smtp_reply_parser p;
    static struct smtp_reply r;
    smtp_reply_parser_init(&p);
    size_t off = 0;
    while (off < len) {
        size_t n = len - off < chunk ? len - off : chunk;
        size_t used = 0;
        int rc = smtp_reply_parse(&p, buf + off, n, &used, &r);
        if (used > n || (rc == 0 && used != n)) abort();
        if (rc == 1)
            check_reply(&r);
        else if (rc < 0 && rc != -HERR_PROTOCOL)
            abort();
        off += used;
        if (rc == 1 && used == 0) abort();
    }
    return 0;
}
