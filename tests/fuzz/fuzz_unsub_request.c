/* The one-click unsubscribe request parser on arbitrary bytes. Oracle:
 * it answers 0 or -EAGAIN; a served request's token lies inside the input
 * and is made of base64url characters; `used` never exceeds the input;
 * need-more never happens past UNSUB_REQUEST_MAX; the answer for a prefix
 * that was complete does not change when more bytes follow the body
 * (one request per connection: trailing bytes are never read). */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "herald/unsub.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    struct unsub_request rq, again;
    int rc = unsub_request_parse(buf, size, &rq);
    if (rc != 0 && rc != -EAGAIN) abort();
    if (rc == -EAGAIN) {
        if (size >= UNSUB_REQUEST_MAX) abort();
        return 0;
    }
    if (rq.used > size) abort();
    if (rq.status == 0) {
        if (!rq.token || rq.token < buf || rq.token + rq.token_len > buf + size) abort();
        if (rq.token_len == 0 || rq.token_len > FB_UNSUB_TOKEN_MAX) abort();
        for (size_t i = 0; i < rq.token_len; i++) {
            char c = rq.token[i];
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '_'))
                abort();
        }
        if (rq.method >= UNSUB_METHOD_COUNT) abort();
    }
    /* The same request with the bytes after it cut off answers the same. */
    if (rq.used < size && rq.used < UNSUB_HEAD_MAX) {
        if (unsub_request_parse(buf, rq.used, &again) != 0) abort();
        if (again.status != rq.status || again.used != rq.used) abort();
    }
    return 0;
}
