/* Fuzz herald-sink's server-side session: arbitrary client bytes, split at
 * input-chosen points, under an input-chosen policy. It must never crash,
 * and its buffers must stay within their bounds. */
#include <assert.h>

#include "herald/smtpd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    /* Byte 0: policy knobs; byte 1: chunk size for the feeds. */
    uint8_t knobs = data[0];
    size_t chunk = (size_t)data[1] + 1;
    data += 2;
    size -= 2;
    struct smtpd_policy pol = {
        .banner = "fuzz ESMTP",
        .hostname = "fuzz",
        .pipelining = knobs & 1,
        .keep_body = knobs & 2,
        .max_size = (knobs & 4) ? 64 : 1 << 20,
        .tempfail_ratio = (knobs & 8) ? 0.3 : 0.0,
        .permfail_ratio = (knobs & 16) ? 0.3 : 0.0,
        .drop_ratio = (knobs & 32) ? 0.2 : 0.0,
        .fail_at = (knobs & 64) ? SMTPD_FAIL_AT_RCPT : SMTPD_FAIL_AT_DATA,
        .starttls = knobs & 128,
        .tls_required = (knobs & 128) && (knobs & 1),
    };
    bool handshake_owed = false;
    struct smtpd_session s;
    smtpd_session_init(&s, &pol, knobs, 1);
    const char *p = (const char *)data;
    size_t left = size;
    while (left) {
        size_t n = left < chunk ? left : chunk;
        size_t off = 0;
        /* The owner's handshake completes between two reads. */
        if (handshake_owed) {
            smtpd_session_tls_ready(&s);
            handshake_owed = false;
            assert(s.state == SMTPD_COMMAND && s.tls_active && !s.have_helo);
        }
        while (off < n) {
            size_t used;
            enum smtpd_event ev = smtpd_session_feed(&s, p + off, n - off, &used);
            assert(used <= n - off);
            assert(ev == SMTPD_EV_NEED_MORE ? used == n - off : 1);
            off += used;
            if (ev == SMTPD_EV_STARTTLS) {
                assert(pol.starttls && !s.tls_active && s.state == SMTPD_STARTTLS);
                handshake_owed = true;
            }
            if (ev == SMTPD_EV_MESSAGE) {
                assert(s.from.len <= SMTPD_ADDR_MAX);
                assert(!pol.keep_body || s.body.len == s.body_len);
            }
        }
        assert(s.line.len <= SMTPD_LINE_MAX);
        assert(s.body.len <= pol.max_size);
        if (s.out.len > (1u << 16))
            hbuf_reset(&s.out); /* the owner sends; the test just drops it */
        p += n;
        left -= n;
    }
    smtpd_session_free(&s);
    return 0;
}
