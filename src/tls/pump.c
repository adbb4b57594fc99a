/* The TLS pump shared by the ring transport (src/net/) and the CLI's
 * blocking tunnel: every call into OpenSSL is followed by draining its
 * output BIO, so no record (a handshake flight, an alert, a key update
 * answer) is ever left behind until some later, unrelated write. */
#include <errno.h>

#include "herald/tls.h"

static int drain(struct tls_conn *t, struct hbuf *wire, int rc)
{
    int out = tls_conn_take_output(t, wire);
    return rc < 0 ? rc : out < 0 ? -ENOMEM : rc;
}

int tls_pump_handshake(struct tls_conn *t, struct hbuf *wire)
{
    return drain(t, wire, tls_conn_handshake(t));
}

int tls_pump_read(struct tls_conn *t, void *buf, size_t cap, struct hbuf *wire)
{
    return drain(t, wire, tls_conn_read(t, buf, cap));
}

int tls_pump_write(struct tls_conn *t, const void *plain, size_t len, struct hbuf *wire)
{
    return drain(t, wire, tls_conn_write(t, plain, len));
}
