"""herald-sink with --tls-cert/--tls-key: STARTTLS over the ring.

A throwaway CA and a leaf for 127.0.0.1 are made with the openssl CLI. Then:
bad TLS options exit 2 with a clear message; Python's smtplib (an ssl
context trusting only that CA) sends several messages on one connection,
over TLS 1.2 and 1.3, and on several connections at once; a client that
pipelines commands behind STARTTLS does not get them run; a client that
sends garbage instead of a ClientHello loses only its own connection;
--tls-required answers MAIL before STARTTLS with 530; --latency-ms still
delays replies under TLS; and `herald run` delivers to the sink with
`tls: required` and `tls: verify`, its notes naming the protocol. The sink's
--stats and --record must agree with what was sent."""

import os
import smtplib
import socket
import ssl
import subprocess
import time

import harness as h

# harness.start_sink connects once to see the sink listen: one plaintext
# connection in every sink's count.
PROBE = 1


def openssl(*args):
    cp = subprocess.run(["openssl"] + list(args), stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, timeout=60)
    h.check(cp.returncode == 0, "openssl %s failed: %s" % (args[0], cp.stderr.decode()[-500:]))


def make_ca(d):
    """(ca.pem, leaf cert, leaf key, a key that does not match the leaf)."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    ca, ca_key = os.path.join(d, "ca.pem"), os.path.join(d, "ca.key")
    openssl("req", "-x509", *ec, "-keyout", ca_key, "-out", ca, "-days", "2",
            "-subj", "/CN=herald-sink test CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    key, csr, crt = (os.path.join(d, n) for n in ("sink.key", "sink.csr", "sink.crt"))
    openssl("req", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1")
    ext = os.path.join(d, "leaf.ext")
    with open(ext, "w") as f:
        f.write("basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
            "-out", crt, "-days", "2", "-extfile", ext)
    return ca, crt, key, ca_key


def client_ctx(ca, max_version=None):
    ctx = ssl.create_default_context(cafile=ca)
    if max_version:
        ctx.maximum_version = max_version
    return ctx


def smtp(port):
    return smtplib.SMTP("127.0.0.1", port, timeout=h.scaled(10))


def msg(i):
    return ("Subject: m%d\r\n\r\nbody %d\r\n.leading dot\r\n" % (i, i)).encode()


def recv_until(sock, marker, what):
    buf = b""
    deadline = time.monotonic() + h.scaled(10)
    while marker not in buf and time.monotonic() < deadline:
        chunk = sock.recv(65536)
        if not chunk:
            break
        buf += chunk
    h.check(marker in buf, "%s: expected %r, got %r" % (what, marker, buf))
    return buf


def check_bad_options(fails, crt, key, wrong_key):
    cases = [
        (["--tls-cert", crt], "go together"),
        (["--tls-key", key], "go together"),
        (["--tls-required"], "needs --tls-cert"),
        (["--tls-cert", crt + ".missing", "--tls-key", key], crt + ".missing"),
        (["--tls-cert", crt, "--tls-key", key + ".missing"], key + ".missing"),
        (["--tls-cert", crt, "--tls-key", wrong_key], "mismatch"),
        (["--tls-cert", key, "--tls-key", key], "loading certificate"),
    ]
    for args, want in cases:
        cp = subprocess.run([h.HERALD_SINK, "--listen", "127.0.0.1:0"] + args,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        err = cp.stderr.decode()
        fails.check(cp.returncode == 2 and want in err,
                    "herald-sink %s: exit 2 naming %r expected, got %d: %s"
                    % (" ".join(args), want, cp.returncode, err.strip()[-300:]))


def one_connection(fails, port, ca, n, max_version=None):
    """n messages on one STARTTLS connection; returns the protocol."""
    c = smtp(port)
    code, caps = c.ehlo("tls.client.test")
    fails.check(code == 250 and b"\nSTARTTLS\n" in caps, "EHLO offers STARTTLS: %r" % caps)
    code, text = c.starttls(context=client_ctx(ca, max_version))
    fails.check((code, text) == (220, b"2.0.0 ready"), "STARTTLS reply: %r" % ((code, text),))
    version = c.sock.version()
    code, caps = c.ehlo("tls.client.test")
    fails.check(code == 250 and b"STARTTLS" not in caps,
                "EHLO inside TLS does not offer STARTTLS again: %r" % caps)
    code, text = c.docmd("STARTTLS")
    fails.check(code == 503, "a second STARTTLS gets 503: %r" % ((code, text),))
    for i in range(n):
        c.sendmail("from@a.test", ["to%d@b.test" % i], msg(i))
    c.quit()
    return version


def pipelined_after_starttls(fails, port, ca):
    """Commands pipelined behind STARTTLS are dropped: after the handshake the
    session is fresh (RCPT finds no MAIL) and no reply to them ever comes."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=h.scaled(10))
    recv_until(raw, b"\r\n", "banner")
    raw.sendall(b"EHLO p.test\r\n")
    recv_until(raw, b"250 ENHANCEDSTATUSCODES\r\n", "EHLO")
    raw.sendall(b"STARTTLS\r\nEHLO evil.test\r\nMAIL FROM:<evil@x.test>\r\n")
    got = recv_until(raw, b"220 2.0.0 ready\r\n", "STARTTLS")
    fails.check(got == b"220 2.0.0 ready\r\n", "only the 220 before the handshake: %r" % got)
    tls = client_ctx(ca).wrap_socket(raw, server_hostname="127.0.0.1")
    tls.sendall(b"RCPT TO:<r@b.test>\r\nNOOP\r\n")
    got = recv_until(tls, b"250 2.0.0 Ok\r\n", "after the handshake")
    fails.check(got == b"503 5.5.1 Error: need MAIL command\r\n250 2.0.0 Ok\r\n",
                "pipelined MAIL must not survive STARTTLS: %r" % got)
    tls.sendall(b"QUIT\r\n")
    recv_until(tls, b"221", "QUIT")
    tls.close()


def garbage_handshake(fails, port, ca):
    """A ClientHello that is not one ends that connection, nothing else: a
    TLS client opened before it and one opened after it both deliver."""
    before = smtp(port)
    before.ehlo("before.test")
    before.starttls(context=client_ctx(ca))
    before.ehlo("before.test")
    raw = socket.create_connection(("127.0.0.1", port), timeout=h.scaled(10))
    recv_until(raw, b"\r\n", "banner")
    raw.sendall(b"EHLO g.test\r\nSTARTTLS\r\n")
    recv_until(raw, b"220 2.0.0 ready\r\n", "STARTTLS")
    raw.sendall(b"MAIL FROM:<plain@x.test>\r\n" * 20)
    rest = b""
    deadline = time.monotonic() + h.scaled(10)
    closed = False
    while time.monotonic() < deadline:
        try:
            chunk = raw.recv(4096)
        except ConnectionResetError:
            closed = True
            break
        if not chunk:
            closed = True
            break
        rest += chunk
    fails.check(closed, "sink closes a connection whose handshake is garbage")
    fails.check(b"250" not in rest and (rest == b"" or rest[:1] == b"\x15"),
                "only a TLS alert (or nothing) after garbage, got %r" % rest[:60])
    raw.close()
    before.sendmail("b@a.test", ["r@b.test"], msg(100))
    before.quit()
    after = smtp(port)
    after.starttls(context=client_ctx(ca))
    after.sendmail("a@a.test", ["r@b.test"], msg(101))
    after.quit()


def sink_part(fails, d, ca, crt, key):
    record = os.path.join(d, "record.txt")
    sink = h.start_sink(["--threads", "2", "--tls-cert", crt, "--tls-key", key,
                         "--record", record])
    try:
        v13 = one_connection(fails, sink.port, ca, 5)
        fails.check(v13 == "TLSv1.3", "default handshake is TLS 1.3: %s" % v13)
        v12 = one_connection(fails, sink.port, ca, 2, ssl.TLSVersion.TLSv1_2)
        fails.check(v12 == "TLSv1.2", "TLS 1.2 when the client caps it: %s" % v12)
        # Several connections at once, interleaved.
        conns = [smtp(sink.port) for _ in range(4)]
        for c in conns:
            c.starttls(context=client_ctx(ca))
        for round_ in range(3):
            for k, c in enumerate(conns):
                c.sendmail("m@a.test", ["n%d@b.test" % k], msg(10 * k + round_))
        for c in conns:
            c.quit()
        # Plaintext still works on a sink that offers TLS.
        c = smtp(sink.port)
        c.sendmail("plain@a.test", ["p@b.test"], msg(50))
        c.quit()
        pipelined_after_starttls(fails, sink.port, ca)
        garbage_handshake(fails, sink.port, ca)
    finally:
        sink.stop()
    st = sink.stats()
    want_msgs = 5 + 2 + 12 + 1 + 2
    fails.check(st["messages"] == want_msgs, "sink counted %d messages: %r" % (want_msgs, st))
    # one, one (1.2), four, pipelined, before-garbage, after-garbage
    fails.check(st["tls_connections"] == 9, "9 TLS handshakes completed: %r" % st)
    fails.check(st["tls_failed"] == 1, "one failed handshake (the garbage): %r" % st)
    fails.check(st["connections"] == 11 + PROBE and st["open"] == 0,
                "11 connections, none left open: %r" % st)
    lines = open(record).read().splitlines()
    fails.check(len(lines) == want_msgs and all(len(x.split(" ")) == 5 for x in lines),
                "one 5-field record line per message: %d lines" % len(lines))


def required_and_latency(fails, ca, crt, key):
    sink = h.start_sink(["--tls-cert", crt, "--tls-key", key, "--tls-required",
                         "--latency-ms", "50"])
    try:
        t0 = time.monotonic()
        c = smtp(sink.port)
        c.ehlo("r.test")
        code, text = c.mail("a@a.test")
        fails.check(code == 530 and text.startswith(b"5.7.0"),
                    "--tls-required: MAIL before STARTTLS gets 530 5.7.0: %r" % ((code, text),))
        c.starttls(context=client_ctx(ca))
        c.sendmail("a@a.test", ["r@b.test"], msg(1))
        c.quit()
        # banner, EHLO, 530, 220, EHLO, MAIL, RCPT, 354, 250, 221: ten replies
        elapsed = time.monotonic() - t0
        fails.check(elapsed >= 0.45, "every reply waits --latency-ms under TLS too (%.3fs)"
                    % elapsed)
    finally:
        sink.stop()
    st = sink.stats()
    fails.check(st["messages"] == 1 and st["tls_connections"] == 1,
                "required sink: 1 message over 1 TLS connection: %r" % st)


def herald_part(fails, ca, crt, key):
    """herald's own STARTTLS client against the sink: required and verify."""
    sink = h.start_sink(["--tls-cert", crt, "--tls-key", key])
    redis = h.start_redis()
    cfg = h.base_config(redis, sink.port)
    cfg["tenants"] = {
        "req": {"from": "r@req.example", "tls": "required"},
        "ver": {"from": "r@ver.example", "tls": "verify"},
    }
    cfg["delivery"] = {"retry": ["1h"], "max_age": "2d", "ca_file": ca,
                       "timeouts": {"idle": "2s"}}
    cfg["providers"] = {"default": {"connections": 2, "messages_per_connection": 10}}
    path = h.write_config(cfg)
    jobs = [{"id": "%s-%d" % (t, i), "tenant": t, "to": "pat%d@clinic.test" % i,
             "subject": "Reminder", "text": "See you at 9:00"}
            for t in ("req", "ver") for i in range(15)]
    h.xadd_jobs(redis, jobs)
    herald = h.run_herald(path)
    h.wait_terminal(redis, [j["id"] for j in jobs], timeout=60, herald=herald)
    herald.stop()
    sink.stop()
    by = h.notes_by_job(h.read_notes(redis))
    for j in jobs:
        n = by.get(j["id"], [{}])[-1]
        fails.check(n.get("event") == "delivered" and n.get("tls", "").startswith("TLSv1.3/"),
                    "%s delivered over TLS 1.3: %s" % (j["id"], h.format_note(n)))
    st = sink.stats()
    fails.check(st["messages"] == len(jobs), "sink got all %d: %r" % (len(jobs), st))
    fails.check(st["tls_connections"] >= 2 and st["tls_connections"] == st["connections"] - PROBE
                and st["tls_failed"] == 0,
                "every herald connection did STARTTLS: %r" % st)


def run():
    d = h.tmpdir().path
    ca, crt, key, wrong_key = make_ca(d)
    fails = h.Failures()
    check_bad_options(fails, crt, key, wrong_key)
    sink_part(fails, d, ca, crt, key)
    required_and_latency(fails, ca, crt, key)
    herald_part(fails, ca, crt, key)
    fails.raise_if_any("herald-sink STARTTLS")


if __name__ == "__main__":
    h.main(run)
