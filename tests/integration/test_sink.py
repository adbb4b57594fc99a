#!/usr/bin/python3
"""herald-sink end to end: real sockets, Python's smtplib as the client.

Starts the sink on a kernel-chosen loopback port (--listen 127.0.0.1:0; the
port is read back from its "listening on" line), sends plain, pipelined and
multi-IP traffic, then checks the stats JSON, the --record lines and the
--save-dir bytes; a second and third run check failure injection, drops and
--latency-ms. Exit 0 pass, 1 fail.
"""
import json
import os
import re
import select
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import time

SINK = os.environ.get("HERALD_SINK", "build/herald-sink")
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, file=sys.stderr)


class Sink:
    """One herald-sink process; stopped by PID, with bounded waits."""

    def __init__(self, tmp, *args):
        self.stats = os.path.join(tmp, "stats.json")
        self.proc = subprocess.Popen(
            [SINK, "--listen", "127.0.0.1:0", "--stats", self.stats, *args],
            stdout=subprocess.PIPE, stderr=open(os.path.join(tmp, "sink.log"), "ab"))
        ready, _, _ = select.select([self.proc.stdout], [], [], 10)
        line = self.proc.stdout.readline().decode() if ready else ""
        m = re.fullmatch(r"herald-sink listening on 127\.0\.0\.1:(\d+)\n", line)
        if not m:
            self.proc.kill()
            raise RuntimeError("sink did not start: %r" % line)
        self.port = int(m.group(1))

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            rc = "killed"
        check(rc == 0, "sink exits 0 on SIGTERM (got %s)" % rc)
        with open(self.stats) as f:
            return json.load(f)


def smtp(port, source="127.0.0.1"):
    return smtplib.SMTP("127.0.0.1", port, timeout=10, source_address=(source, 0))


def recv_replies(sock, n):
    """Read until n final reply lines ("ddd " form) have arrived."""
    buf = b""
    deadline = time.time() + 10
    while len(re.findall(rb"^\d{3} ", buf, re.M)) < n and time.time() < deadline:
        chunk = sock.recv(65536)
        if not chunk:
            break
        buf += chunk
    return buf.decode()


def test_traffic(tmp):
    save = os.path.join(tmp, "saved")
    os.mkdir(save)
    record = os.path.join(tmp, "record.txt")
    sink = Sink(tmp, "--threads", "2", "--record", record, "--save-dir", save,
                "--banner", "sink.test ESMTP test")
    bodies = []
    try:
        # Plain: one connection, two messages; dots at line starts and 8-bit
        # bytes must come back exactly (smtplib stuffs, the sink un-stuffs).
        c = smtp(sink.port)
        code, msg = c.ehlo("client.test")
        check(code == 250, "EHLO 250")
        for ext in (b"PIPELINING", b"8BITMIME", b"SIZE 50000000", b"SMTPUTF8",
                    b"ENHANCEDSTATUSCODES"):
            check(ext in msg, "EHLO advertises %s" % ext.decode())
        m1 = b"Subject: one\r\n\r\n.starts with a dot\r\n..two dots\r\n.\r\nend\r\n"
        m2 = "Subject: two\r\n\r\nh\u00e9llo 8-bit\r\n".encode() + b"x" * 3000 + b"\r\n"
        for m in (m1, m2):
            c.sendmail("from@a.test", ["to@b.test"], m)
            bodies.append(m)
        c.quit()

        # Pipelined by hand: MAIL, RCPT, RCPT, DATA in one write; then the
        # body and QUIT in one write.
        s = socket.create_connection(("127.0.0.1", sink.port), timeout=10)
        banner = recv_replies(s, 1)
        check(banner == "220 sink.test ESMTP test\r\n", "banner is --banner: %r" % banner)
        s.sendall(b"EHLO p.test\r\n")
        recv_replies(s, 1)
        s.sendall(b"MAIL FROM:<p@a.test>\r\nRCPT TO:<q1@b.test>\r\nRCPT TO:<q2@b.test>\r\nDATA\r\n")
        r = recv_replies(s, 4)
        check(r == "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n"
                   "354 End data with <CR><LF>.<CR><LF>\r\n", "pipelined replies: %r" % r)
        m3 = b"Subject: three\r\n\r\nbody\r\n"
        s.sendall(m3 + b".\r\nNOOP\r\nBOGUS\r\nQUIT\r\n")
        r = recv_replies(s, 4)
        check(re.fullmatch(r"250 2\.0\.0 Ok: queued as \S+\r\n250 2\.0\.0 Ok\r\n"
                           r"500 5\.5\.1 [^\r]*\r\n221 2\.0\.0 Bye\r\n", r) is not None,
              "body+NOOP+BOGUS+QUIT replies: %r" % r)
        check(s.recv(100) == b"", "connection closed after QUIT")
        s.close()
        bodies.append(m3)

        # Another egress address, several connections open at once.
        conns = [smtp(sink.port, "127.0.0.2") for _ in range(3)]
        for k in conns:
            k.ehlo("multi.test")
        for k in conns:
            k.sendmail("m@a.test", ["n@b.test"], b"Subject: m\r\n\r\nm\r\n")
            bodies.append(b"Subject: m\r\n\r\nm\r\n")
        for k in conns:
            k.quit()
        time.sleep(1.3)  # one periodic stats/record write happens meanwhile
        with open(sink.stats) as f:
            mid = json.load(f)
        check(mid["messages"] == 6, "periodic stats count 6 messages: %r" % mid)
    finally:
        stats = sink.stop()

    check(stats["messages"] == 6, "messages == 6: %r" % stats)
    check(stats["connections"] == 5, "connections == 5")
    check(stats["open"] == 0, "open == 0")
    check(stats["max_concurrent"] >= 3, "max_concurrent >= 3")
    check(stats["bytes"] == sum(len(b) for b in bodies), "bytes is the un-stuffed body sum")
    check(stats["by_ip"] == {"127.0.0.1": 3, "127.0.0.2": 3}, "by_ip: %r" % stats["by_ip"])
    check(stats["by_ip_max_concurrent"].get("127.0.0.2") == 3, "by_ip_max_concurrent 127.0.0.2")
    check(stats["tempfail"] == 0 and stats["permfail"] == 0 and stats["dropped"] == 0,
          "no failures")

    saved = sorted(open(os.path.join(save, f), "rb").read() for f in os.listdir(save))
    check(len(saved) == 6, "6 saved messages")
    check(saved == sorted(bodies), "saved bodies are byte-exact")

    lines = open(record).read().splitlines()
    check(len(lines) == 6, "6 record lines")
    fields = [line.split(" ") for line in lines]
    check(all(len(f) == 5 for f in fields), "record lines have 5 fields")
    check(["p@a.test", "q1@b.test,q2@b.test"] in [f[3:] for f in fields],
          "record has pipelined message's from and rcpts")
    check(sorted(f[1] for f in fields) == ["127.0.0.1"] * 3 + ["127.0.0.2"] * 3,
          "record client IPs")
    check(all(abs(int(f[0]) - time.time() * 1000) < 60000 for f in fields), "record unix_ms")


def test_failures(tmp):
    sink = Sink(tmp, "--tempfail", "1", "--fail-at", "rcpt")
    try:
        c = smtp(sink.port)
        try:
            c.sendmail("a@a.test", ["b@b.test"], b"x\r\n")
            check(False, "rcpt tempfail raises")
        except smtplib.SMTPRecipientsRefused as e:
            code, text = e.recipients["b@b.test"]
            check(code == 451 and text.startswith(b"4.3.0"), "451 4.3.0 at RCPT: %r" % (text,))
        c.quit()
    finally:
        stats = sink.stop()
    check(stats["tempfail"] == 1 and stats["messages"] == 0, "tempfail counted: %r" % stats)

    sink = Sink(tmp, "--permfail", "1")
    try:
        c = smtp(sink.port)
        try:
            c.sendmail("a@a.test", ["b@b.test"], b"x\r\n")
            check(False, "data permfail raises")
        except smtplib.SMTPDataError as e:
            check(e.smtp_code == 550 and e.smtp_error.startswith(b"5.1.1"), "550 5.1.1 after DATA")
        c.quit()
    finally:
        stats = sink.stop()
    check(stats["permfail"] == 1, "permfail counted: %r" % stats)

    sink = Sink(tmp, "--drop", "1")
    try:
        c = smtp(sink.port)
        try:
            c.sendmail("a@a.test", ["b@b.test"], b"Subject: d\r\n\r\n" + b"y" * 10000 + b"\r\n")
            check(False, "drop raises")
        except (smtplib.SMTPServerDisconnected, ConnectionError):
            pass
        time.sleep(0.2)
    finally:
        stats = sink.stop()
    check(stats["dropped"] == 1 and stats["messages"] == 0 and stats["open"] == 0,
          "dropped counted, connection gone: %r" % stats)


def test_latency_and_limits(tmp):
    sink = Sink(tmp, "--latency-ms", "300", "--no-pipelining", "--max-size", "100")
    try:
        t0 = time.monotonic()
        c = smtp(sink.port)  # waits for the delayed banner
        code, msg = c.ehlo("l.test")
        elapsed = time.monotonic() - t0
        check(0.55 <= elapsed < 3, "banner and EHLO each delayed 300 ms (%.3fs)" % elapsed)
        check(b"PIPELINING" not in msg and b"SIZE 100" in msg, "--no-pipelining, --max-size")
        code, _ = c.mail("a@a.test", ["SIZE=200"])
        check(code == 552, "552 for MAIL SIZE= over --max-size")
        c.mail("a@a.test")  # no SIZE=: the sink finds out at the end of DATA
        c.rcpt("b@b.test")
        code, _ = c.data(b"z" * 200 + b"\r\n")
        check(code == 552, "552 for a body over --max-size")
        # A command line over 4096 bytes: 500, then the sink hangs up.
        code, _ = c.docmd("NOOP", "x" * 5000)
        check(code == 500, "overlong line gets 500")
        try:
            c.noop()
            check(False, "connection closed after overlong line")
        except smtplib.SMTPServerDisconnected:
            pass
    finally:
        stats = sink.stop()
    check(stats["messages"] == 0 and stats["open"] == 0, "limits run stats: %r" % stats)


def main():
    if not os.access(SINK, os.X_OK):
        print("herald-sink not built at %s" % SINK, file=sys.stderr)
        return 1
    tmp = tempfile.mkdtemp(prefix="herald-sink-test-")
    try:
        for t in (test_traffic, test_failures, test_latency_and_limits):
            sub = os.path.join(tmp, t.__name__)
            os.mkdir(sub)
            try:
                t(sub)
            except Exception as e:  # a crash in one part still reports the others
                check(False, "%s raised %r" % (t.__name__, e))
        if failures:
            log = [os.path.join(d, "sink.log") for d, _, fs in os.walk(tmp) if "sink.log" in fs]
            for p in log:
                sys.stderr.write(open(p).read())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("test_sink: %s" % ("FAIL (%d)" % len(failures) if failures else "ok"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
