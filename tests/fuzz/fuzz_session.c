/* The session driven by an arbitrary server and an arbitrary owner.
 * Input is a sequence of (control byte, chunk): the control byte's low six
 * bits are the chunk length, the top two the action: 0 feed without sending
 * s->out (replies then answer unsent commands), 1 and 2 feed and send,
 * 3 an owner action (kick, quit, fail; the TLS handshake's result while the
 * session waits for it) chosen by the length.
 * Asserts: msg_done exactly once per message handed out, never for others,
 * even when the session is freed mid-transaction; out stays bounded. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "herald/smtp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define N_MSGS 3

struct owner {
    struct smtp_msg msgs[N_MSGS];
    int handed;
    int done[N_MSGS];
};

static struct smtp_msg *next_msg(void *o)
{
    struct owner *w = o;
    return w->handed < N_MSGS ? &w->msgs[w->handed++] : NULL;
}

static void msg_done(void *o, struct smtp_msg *m, const struct smtp_result *res)
{
    struct owner *w = o;
    int i = (int)(m - w->msgs);
    if (i < 0 || i >= w->handed || w->done[i]++ != 0) abort();
    if (strnlen(res->reply, sizeof res->reply) >= sizeof res->reply) abort();
    if (res->outcome == SMTP_OUT_OK && res->code / 100 != 2) abort();
}

static const struct smtp_session_ops ops = {next_msg, msg_done};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char body[] = "Subject: x\r\n\r\nhi\r\n..dot\r\n.\r\n";
    static char big[300];
    memset(big, 'a', sizeof big);
    memcpy(big + sizeof big - 5, "\r\n.\r\n", 5);
    struct owner w;
    memset(&w, 0, sizeof w);
    for (int i = 0; i < N_MSGS; i++) {
        w.msgs[i].mail_from = i == 1 ? "" : "a@x.test";
        w.msgs[i].rcpt = "b@y.test";
        w.msgs[i].data = i == 2 ? big : body;
        w.msgs[i].data_len = i == 2 ? sizeof big : strlen(body);
        w.msgs[i].needs_smtputf8 = i == 1;
    }
    struct smtp_timeouts t = {1000, 1000, 1000, 1000};
    struct smtp_session s;
    uint32_t max_msgs = size ? data[0] % 4 : 0;
    smtp_session_init(&s, &ops, &w, "fuzz.test", &t, max_msgs, 0);
    /* The first byte's upper bits pick the TLS mode and whether to AUTH. */
    static const struct smtp_auth cred = {.user = "u", .pass = "p", .allow_plaintext = true};
    if (size)
        smtp_session_set_security(&s, (enum smtp_tls_mode)((data[0] >> 2) % 4), data[0] & 0x20,
                                  (data[0] & 0x10) ? &cred : NULL);
    size_t off = size ? 1 : 0;
    int64_t now = 0;
    while (off < size) {
        uint8_t c = data[off++];
        size_t n = c & 0x3f;
        int act = c >> 6;
        now += 10;
        if (act == 3) {
            if (smtp_session_wants_tls(&s)) {
                /* The handshake result, succeeded or failed by the length. */
                smtp_session_tls_done(&s, n & 1 ? -EPROTO : 0, "fuzz", now);
                continue;
            }
            switch (n % 4) {
            case 0:
                smtp_session_kick(&s, now);
                break;
            case 1:
                smtp_session_quit(&s, now);
                break;
            case 2:
                smtp_session_fail(&s, -HERR_TIMEOUT, "timeout");
                break;
            default:
                hbuf_consume(&s.out, s.out.len);
                break;
            }
            continue;
        }
        if (n > size - off) n = size - off;
        int rc = smtp_session_recv(&s, (const char *)data + off, n, now);
        off += n;
        if (rc < 0 && !smtp_session_is_closed(&s)) abort();
        if (rc < 0 && (!s.has_error || rc != s.err)) abort();
        if (s.out.len > 4096) abort();
        if (act != 0) hbuf_consume(&s.out, s.out.len);
        if (s.state == SMTP_S_CLOSED && s.msg) abort();
    }
    smtp_session_free(&s);
    for (int i = 0; i < w.handed; i++)
        if (w.done[i] != 1) abort();
    return 0;
}
