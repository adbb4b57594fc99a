"""The harness itself, without herald: redis start/restart/stop, the
receiving SMTP server's recipient rules and exact byte capture, the YAML
writer, and that every process started is gone afterwards."""

import os
import smtplib
import time

import harness as h


def pid_gone(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie still answers kill(0); it's gone for our purposes once reaped.
    with open("/proc/%d/stat" % pid) as f:
        return f.read().split(")")[-1].split()[0] == "Z"


def test_redis():
    r = h.start_redis(persist=True)
    h.check(r.client.ping(), "PING")
    sid = r.client.xadd(h.EVENTS_STREAM, {"event": "delivered", "job": "j1", "code": "250",
                                               "tenant": "acme", "at": "1796280000000"})
    notes = h.read_notes(r, validate=False)
    h.check(len(notes) == 1 and notes[0]["job"] == "j1" and notes[0]["_id"] == sid,
            "read_notes: %r" % notes)
    h.check(h.wait_notes(r, 1, 2) == 1, "wait_notes")
    try:
        h.wait_notes(r, 2, 0.3)
        raise AssertionError("wait_notes did not time out")
    except h.TestFailure:
        pass
    # Paging across more than one XRANGE page.
    pipe = r.client.pipeline()
    for i in range(2500):
        pipe.xadd(h.EVENTS_STREAM, {"event": "deferred" if i % 2 else "bounced", "job": "p%d" % i,
                                    "tenant": "acme", "at": "1796280000000"})
    pipe.execute()
    notes = h.read_notes(r, validate=False)
    h.check(len(notes) == 2501, "paged read: %d" % len(notes))
    h.check(h.summarize(notes) == "bounced=1250 deferred=1250 delivered=1",
            h.summarize(notes))
    got = h.wait_terminal(r, ["j1", "p0"], 2)
    h.check(len(got) == 2501, "wait_terminal read everything")

    old_pid, port = r.proc.pid, r.port
    r.restart()
    h.check(r.port == port and r.proc.pid != old_pid, "restart keeps the port")
    h.check(pid_gone(old_pid), "old redis pid gone")
    h.check(r.client.xlen(h.EVENTS_STREAM) == 2501, "persisted across restart")

    r2 = h.start_redis()
    h.check(r2.port != r.port, "two redis servers, two ports")
    r2.restart()
    h.check(r2.client.dbsize() == 0, "non-persistent restart starts empty")
    r2.stop()
    h.check(pid_gone(r2.proc.pid), "stopped redis pid gone")
    return r


def test_smtp():
    s = h.start_aiosmtpd(slow_seconds=1.0)
    with smtplib.SMTP("127.0.0.1", s.port, timeout=10) as c:
        c.ehlo("client.test")
        c.mail("a@acme.test")
        code, msg = c.rcpt("bounce-1@example.test")
        h.check(code == 550 and b"5.1.1" in msg, "bounce rule: %d %r" % (code, msg))
        code, msg = c.rcpt("Defer.me@example.test")
        h.check(code == 451 and b"4.7.1" in msg, "defer rule: %d %r" % (code, msg))
        t0 = time.monotonic()
        code, _ = c.rcpt("slow@example.test")
        took = time.monotonic() - t0
        h.check(code == 250 and took >= 0.9, "slow rule: %d after %.2fs" % (code, took))
        code, _ = c.rcpt("ok@example.test")
        h.check(code == 250, "plain recipient accepted")
        body = (b"Subject: t\r\nMessage-ID: <x@y>\r\n\r\n..dot line\r\nline two\r\n"
                b"caf\xc3\xa9\r\n")
        # smtplib would re-stuff dots; speak DATA by hand to control the bytes.
        code, _ = c.docmd("DATA")
        h.check(code == 354, "DATA 354")
        c.send(body + b".\r\n")
        code, msg = c.getreply()
        h.check(code == 250, "message accepted: %d %r" % (code, msg))
    h.check(s.wait_count(1, 5) == 1, "one message saved")
    m = s.messages()[0]
    h.check(m["mail_from"] == "a@acme.test", "mail_from %r" % m["mail_from"])
    h.check(m["rcpt_tos"] == ["slow@example.test", "ok@example.test"], "rcpts %r" % m["rcpt_tos"])
    want = body.replace(b"\r\n..dot", b"\r\n.dot")
    h.check(m["content"] == want, "exact bytes, unstuffed: %r" % m["content"])

    custom = h.start_aiosmtpd(rules=[{"prefix": "x", "reply": "552 5.2.2 full {rcpt}"}])
    with smtplib.SMTP("127.0.0.1", custom.port, timeout=10) as c:
        c.ehlo("client.test")
        c.mail("a@acme.test")
        code, msg = c.rcpt("xy@example.test")
        h.check(code == 552 and b"full xy@example.test" in msg, "custom rule %d %r" % (code, msg))
        code, _ = c.rcpt("bounce@example.test")
        h.check(code == 250, "custom rules replace the defaults")
    custom.stop()
    h.check(pid_gone(custom.proc.pid), "stopped aiosmtpd pid gone")
    return s


def test_yaml():
    r = type("R", (), {"url": "redis://127.0.0.1:1/0"})()
    cfg = h.base_config(r, 2525, engine={"max_field_bytes": 4096},
                        tenants={"acme": {"domains": ["acme.test", "x.test"]}})
    text = h.to_yaml(cfg)
    for line in ('  url: redis://127.0.0.1:1/0', '  workers: 2', '  claim_idle: 2s',
                 '  max_field_bytes: 4096', '  "*": 127.0.0.1:2525',
                 '    from: reminders@acme.test', '    domains: [acme.test, x.test]',
                 '  retry: [1s]', '    idle: 2s', '    connections: 10',
                 '    from: desk@beta.test'):
        h.check(line in text.splitlines(), "YAML lacks %r:\n%s" % (line, text))
    h.check(h._yaml_scalar("yes") == '"yes"' and h._yaml_scalar("a: b") == '"a: b"'
            and h._yaml_scalar("5") == '"5"' and h._yaml_scalar("é") == '"é"',
            "YAML quoting")
    path = h.write_config("a: 1\n", name="raw.yaml")
    with open(path) as f:
        h.check(f.read() == "a: 1\n", "write_config text")


def run():
    r = test_redis()
    s = test_smtp()
    test_yaml()
    pids = [p.pid for p in h._procs]
    h._stop_all()
    h.check(all(pid_gone(p) for p in pids), "every started process is gone")
    h.check(not r.proc.alive() and not s.proc.alive(), "servers stopped")


if __name__ == "__main__":
    h.main(run)
