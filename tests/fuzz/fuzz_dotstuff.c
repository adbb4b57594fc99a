/* msg_append_dotstuffed on arbitrary bytes, fed in two pieces: the output
 * has CRLF as its only line ending, never holds "CRLF . CRLF", and undoing
 * the stuffing gives back the input with its line endings normalised. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "herald/job.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t split = size ? data[0] % (size + 1) : 0;
    const char *in = (const char *)data;
    struct hbuf out;
    hbuf_init(&out);
    if (msg_append_dotstuffed(&out, in, split) ||
        msg_append_dotstuffed(&out, in + split, size - split))
        abort();
    const char *o = out.data ? out.data : "";
    /* Only CRLF line endings. */
    for (size_t i = 0; i < out.len; i++) {
        if (o[i] == '\r' && (i + 1 >= out.len || o[i + 1] != '\n')) abort();
        if (o[i] == '\n' && (i == 0 || o[i - 1] != '\r')) abort();
    }
    /* No end-of-data marker, not even at the very start. */
    if (out.len >= 3 && memcmp(o, ".\r\n", 3) == 0) abort();
    if (memmem(o, out.len, "\r\n.\r\n", 5)) abort();
    /* Un-stuff and compare with the normalised input. A bare CR at the end
     * of the first piece followed by LF in the second yields two breaks, so
     * the piece boundary is normalised separately. */
    struct hbuf want;
    hbuf_init(&want);
    for (int piece = 0; piece < 2; piece++) {
        const char *s = piece ? in + split : in;
        size_t n = piece ? size - split : split;
        for (size_t i = 0; i < n; i++) {
            if (s[i] == '\r' || s[i] == '\n') {
                if (s[i] == '\r' && i + 1 < n && s[i + 1] == '\n') i++;
                hbuf_append(&want, "\r\n", 2);
            } else {
                hbuf_append_char(&want, s[i]);
            }
        }
    }
    struct hbuf got;
    hbuf_init(&got);
    for (size_t i = 0; i < out.len; i++) {
        bool bol = i == 0 || o[i - 1] == '\n';
        if (bol && o[i] == '.') {
            if (i + 1 >= out.len || o[i + 1] != '.')
                abort(); /* a line-start dot must have been doubled */
            i++;
        }
        hbuf_append_char(&got, o[i]);
    }
    if (got.len != want.len || (got.len && memcmp(got.data, want.data, got.len) != 0)) abort();
    hbuf_free(&got);
    hbuf_free(&want);
    hbuf_free(&out);
    return 0;
}
