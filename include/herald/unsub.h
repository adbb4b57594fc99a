/* unsub: the request side of the one-click unsubscribe endpoint (RFC 8058).
 * A pure parser for the HTTP/1.x requests the listener accepts; the
 * listener itself is engine code (src/engine/unsub.c). */
#ifndef HERALD_UNSUB_H
#define HERALD_UNSUB_H

#include <stdbool.h>
#include <stddef.h>

#include "herald/feedback.h"

#define UNSUB_HEAD_MAX    8192 /* request line and header fields */
#define UNSUB_BODY_MAX    1024
#define UNSUB_REQUEST_MAX (UNSUB_HEAD_MAX + UNSUB_BODY_MAX)
/* The one body RFC 8058 defines, form-encoded. */
#define UNSUB_ONE_CLICK_BODY "List-Unsubscribe=One-Click"

enum unsub_method { UNSUB_GET = 0, UNSUB_HEAD, UNSUB_POST, UNSUB_METHOD_COUNT };

struct unsub_request {
    /* 0: a request to serve; else the HTTP status to refuse it with (400
     * malformed or a wrong POST body, 404 not /u/<token>, 405 method, 411
     * POST without Content-Length, 413 body over UNSUB_BODY_MAX, 431
     * header over UNSUB_HEAD_MAX, 505 not HTTP/1.0 or 1.1). */
    int status;
    enum unsub_method method;
    bool http10;
    const char *token; /* into the buffer; base64url bytes, not checked further */
    size_t token_len;
    size_t used; /* bytes of the buffer this request took (header + body) */
};

/* Reads one request from buf[0..len). Returns 0 with out filled (out->status
 * says whether to serve it), or -EAGAIN when more bytes are needed (never
 * past UNSUB_REQUEST_MAX: a longer head or body is answered, not awaited).
 * No I/O, no allocation; never reads outside buf. */
int unsub_request_parse(const char *buf, size_t len, struct unsub_request *out);

#endif
