"""Transcript test (the idea of curl's tests/data files: assert the exact
protocol exchange): pool + STARTTLS + 421 + failover, the exact command
sequence herald sends.

fo.test has two exchangers on one port (delivery.port applies to every MX):
  mx10.fo.test (pref 10, 127.0.0.21) answers the greeting with
      "421 4.3.2 try later" (at the banner, before any EHLO) and closes once
      the client has;
  mx20.fo.test (pref 20, 127.0.0.22) records every line it receives, with
      the TLS state, and offers PIPELINING SIZE 8BITMIME ENHANCEDSTATUSCODES
      STARTTLS (no CHUNKING), with a certificate from testca.py.
Three jobs to fo.test, one worker, one connection per provider, tls
opportunistic. The 421 is held back until herald's trace log shows all
three jobs handed to the pool, so all three wait in mx10's queue behind the one connection the provider
allows and fail over together; the connection to mx20 then carries all
three and QUITs when idle.

Expected at mx20, exactly (RFC 5321, RFC 3207, RFC 2920, RFC 1870):
  EHLO test.herald                       plaintext
  STARTTLS                               plaintext
  EHLO test.herald                       TLS (capabilities forgotten, EHLO again)
  MAIL FROM:<reminders@acme.test> SIZE=N  }
  RCPT TO:<pat1@fo.test>                  } per message, TLS; no RSET between
  DATA                                    } successful transactions
  ... x3
  QUIT                                   TLS, after the idle timeout
where N is what herald declares: the DATA payload as it goes on the wire
without the terminating ".\\r\\n" (RFC 1870; stuffing dots, none here,
would still be counted, an overestimate the RFC tolerates). No BODY=
parameter: herald's messages are 7-bit (quoted-printable/base64) and it does not declare 8BITMIME.

At mx10: exactly one connection and no command at all (after a 421 the
server is closing; herald neither QUITs nor tries EHLO).

Notes: exactly three, all delivered, mx=mx20.fo.test, remote_ip 127.0.0.22,
tls a TLS version (not "none"), no tls_note."""

import difflib
import json
import os
import re
import time

import harness as h
from dnszone import DnsZone
from testca import TestCA

HERE = os.path.dirname(os.path.abspath(__file__))
SERVER = os.path.join(HERE, "transcript_smtp.py")
MX10_IP, MX20_IP = "127.0.0.21", "127.0.0.22"
EHLO = "test.herald"
SENDER = "reminders@acme.test"
N_JOBS = 3


def job(i):
    return {"id": "tr-%d" % i, "tenant": "acme", "to": "pat%d@fo.test" % i,
            "subject": "Reminder %d" % i, "text": "See you at 9:0%d" % i}


class Recorder:
    """One transcript_smtp.py process and its JSON-lines log."""

    def __init__(self, name, mode, host, port, extra=()):
        self.name = name
        self.host = host
        self.log_path = h.tmpdir().unique(name) + ".jsonl"
        self.proc = h.Proc(name, [h.PY, SERVER, "--mode", mode, "--host", host, "--port", port,
                                  "--log", self.log_path] + list(extra))
        self.ok = False
        deadline = time.monotonic() + h.scaled(15)
        while time.monotonic() < deadline and self.proc.alive():
            if "READY" in self.proc.read_stdout():
                self.ok = True
                h._diagnostics.append(self._diagnose)
                return
            time.sleep(0.05)

    def records(self):
        try:
            with open(self.log_path) as f:
                return [json.loads(l) for l in f if l.strip()]
        except OSError:
            return []

    def connections(self):
        return sorted({r["conn"] for r in self.records()})

    def commands(self, conn=None):
        return [r for r in self.records() if r["ev"] == "cmd" and (conn is None or r["conn"] == conn)]

    def _diagnose(self):
        recs = self.records()
        return "%s (%s) log %s, %d records:\n%s\nstderr tail:\n%s" % (
            self.name, self.host, self.log_path, len(recs),
            "\n".join("  " + json.dumps(r) for r in recs[-40:]), self.proc.tail(10) or "(empty)")


def start_servers(cert, hold_file):
    """Both exchangers on one free port (retried when another test holds it)."""
    last = ""
    for _ in range(5):
        port = h.free_port()
        mx20 = Recorder("mx20", "record", MX20_IP, port,
                        ["--tls-cert", cert[0], "--tls-key", cert[1]])
        mx10 = Recorder("mx10", "greet421", MX10_IP, port,
                        ["--hold-file", hold_file, "--hold-max", str(h.scaled(30))]) \
            if mx20.ok else None
        if mx20.ok and mx10.ok:
            h.log("mx10 (421) on %s:%d, mx20 (recorder, STARTTLS) on %s:%d"
                  % (MX10_IP, port, MX20_IP, port))
            return port, mx10, mx20
        for r in (mx20, mx10):
            if r is not None:
                last = r.proc.tail(5)
                r.proc.stop(timeout=2)
        if "in use" not in last:
            break
    raise h.TestFailure("transcript servers did not start:\n%s" % last)


def show(recs):
    return ["%-5s %s" % ("tls" if r["tls"] else "plain", r["line"]) for r in recs]


def transcript_diff(expected, got):
    """Line by line, expected vs got, with a unified diff below."""
    width = max([len(x) for x in expected] + [8])
    rows = ["  %-3s %-*s | %s" % ("#", width, "expected", "got")]
    for i in range(max(len(expected), len(got))):
        e = expected[i] if i < len(expected) else "(nothing)"
        g = got[i] if i < len(got) else "(nothing)"
        rows.append("%s %-3d %-*s | %s" % (" " if e == g else "!", i + 1, width, e, g))
    diff = difflib.unified_diff(expected, got, "expected", "got", lineterm="", n=2)
    return "\n".join(rows) + "\n" + "\n".join(diff)


def wait_submitted(herald, ids, timeout):
    """Until herald's trace log says every job was handed to the pool
    (delivery_state ... to=sending is logged in the same call that queues it
    on its destination, with nothing in between that could yield)."""
    want = set(ids)
    pat = re.compile(r"event=delivery_state job=(\S+) .*\bto=sending\b")
    deadline = time.monotonic() + h.scaled(timeout)
    while True:
        seen = {m.group(1) for m in pat.finditer(herald.read_stderr())} & want
        if seen == want:
            return
        herald.check()
        if time.monotonic() >= deadline:
            raise h.TestFailure("herald did not queue %s within %.0fs (trace log)"
                                % (sorted(want - seen), h.scaled(timeout)))
        time.sleep(0.05)


def run():
    ca = TestCA(h.tmpdir().path)
    cert = ca.issue("mx20", ["mx20.fo.test"])
    hold_file = h.tmpdir().join("release-421")
    port, mx10, mx20 = start_servers(cert, hold_file)
    zone = DnsZone([
        "mx-host=fo.test,mx10.fo.test,10",
        "mx-host=fo.test,mx20.fo.test,20",
        "host-record=mx10.fo.test,%s" % MX10_IP,
        "host-record=mx20.fo.test,%s" % MX20_IP,
    ])
    redis = h.start_redis()
    cfg = h.base_config(redis, 9)
    del cfg["routes"]
    cfg["engine"]["workers"] = 1  # the connection limit is divided across workers
    cfg["engine"]["ehlo"] = EHLO
    cfg["dns"] = {"servers": [zone.server]}
    cfg["delivery"] = {"port": port, "tls": "opportunistic", "retry": ["1h"], "max_age": "2d",
                       "timeouts": {"connect": "5s", "idle": "2s"}}
    cfg["providers"] = {"default": {"connections": 1, "messages_per_connection": 100}}
    path = h.write_config(cfg)
    jobs = [job(i) for i in range(1, N_JOBS + 1)]
    h.xadd_jobs(redis, jobs)
    herald = h.run_herald(path, ["--log-level", "trace"])

    # Hold the 421 until all three jobs are queued on mx10's destination
    # (behind the one connection the provider allows): then that one failed
    # connection fails all three over together and mx10 sees exactly one
    # connection, however slowly admission and DNS went.
    wait_submitted(herald, [j["id"] for j in jobs], timeout=30)
    open(hold_file, "w").close()
    h.log("421 released")

    h.wait_terminal(redis, [j["id"] for j in jobs], timeout=60, herald=herald)
    # The pooled connection QUITs after the idle timeout (2s).
    deadline = time.monotonic() + h.scaled(20)
    while time.monotonic() < deadline:
        if any(r["ev"] == "close" for r in mx20.records()):
            break
        herald.check()
        time.sleep(0.1)
    herald.stop()
    deadline = time.monotonic() + h.scaled(5)  # "close" is written once the peer has gone
    while time.monotonic() < deadline and not all(
            any(r["ev"] == "close" for r in srv.records()) for srv in (mx10, mx20)):
        time.sleep(0.05)

    fails = h.Failures()

    # ---- mx20: one connection, the exact transcript --------------------
    conns20 = mx20.connections()
    fails.check(len(conns20) == 1,
                "mx20 should see exactly one connection (one per provider, pooled), saw %d"
                % len(conns20))
    recs = [r for r in mx20.records() if r["conn"] == (conns20[0] if conns20 else 1)]
    got_cmds = [r for r in recs if r["ev"] == "cmd"]
    bodies = [r for r in recs if r["ev"] == "body"]
    tls_recs = [r for r in recs if r["ev"] == "tls"]
    early = [r for r in recs if r["ev"] == "early"]
    fails.check(not early, "bytes arrived that must wait for a reply (after STARTTLS's 220 "
                "before the handshake, or after DATA before 354): %s" % early)
    fails.check(len(tls_recs) == 1, "mx20: one TLS handshake expected, saw %s" % tls_recs)

    # One worker: the jobs go out in the order they were enqueued, through
    # admission, the MX lookup they all wait for, and the failover.
    order = ["pat%d@fo.test" % i for i in range(1, N_JOBS + 1)]
    sizes = [b["octets"] for b in bodies] + ["?"] * (N_JOBS - len(bodies))
    expected = ["plain EHLO %s" % EHLO, "plain STARTTLS", "tls   EHLO %s" % EHLO]
    for rcpt, size in zip(order, sizes):
        expected += ["tls   MAIL FROM:<%s> SIZE=%s" % (SENDER, size - 3 if size != "?" else size),
                     "tls   RCPT TO:<%s>" % rcpt,
                     "tls   DATA"]
    expected.append("tls   QUIT")
    got = show(got_cmds)
    if got != expected:
        fails.add("mx20 transcript differs (SIZE= is the DATA payload as sent, final "
                  "\".\\r\\n\" excluded):\n" + transcript_diff(expected, got))
    fails.check(len(bodies) == N_JOBS and all(b["tls"] for b in bodies),
                "mx20: %d message bodies over TLS expected, saw %s" % (N_JOBS, bodies))
    close20 = [r for r in recs if r["ev"] == "close"]
    fails.check(close20 and close20[-1]["why"] == "after QUIT",
                "mx20: the connection should end with QUIT/221, ended: %s" % close20)

    # ---- mx10: one connection, nothing sent after the 421 ---------------
    conns10 = mx10.connections()
    fails.check(len(conns10) == 1, "mx10 (421 greeting) should see exactly one connection, "
                "saw %d" % len(conns10))
    cmds10 = show(mx10.commands())
    fails.check(not cmds10, "after a 421 greeting herald should send nothing (no EHLO, no "
                "QUIT, no MAIL), mx10 got:\n" + "\n".join("    " + c for c in cmds10))
    fails.check(not any(c.split()[1].upper() == "MAIL" for c in cmds10 if len(c.split()) > 1),
                "mx10 must not see MAIL")

    # ---- case notes -----------------------------------------------------
    notes = h.read_notes(redis)
    fails.check(len(notes) == N_JOBS, "exactly %d notes expected (failover writes none), got "
                "%d: %s" % (N_JOBS, len(notes), h.summarize(notes)))
    by = {n.get("job"): n for n in notes}
    for j in jobs:
        n = by.get(j["id"], {})
        fails.check(n.get("event") == "delivered" and n.get("mx") == "mx20.fo.test"
                    and n.get("remote_ip") == MX20_IP
                    and n.get("tls", "none") not in ("", "none")
                    and n.get("tls", "").startswith("TLSv1.")
                    and not n.get("tls_note"),
                    "%s: delivered via mx20.fo.test [%s] over TLS expected: %s (tls=%r mx=%r "
                    "tls_note=%r)" % (j["id"], MX20_IP, h.format_note(n), n.get("tls"),
                                      n.get("mx"), n.get("tls_note")))
    h.log("mx20 transcript:\n" + "\n".join("    " + l for l in got))
    if tls_recs:
        h.log("mx20 TLS: %s %s" % (tls_recs[0]["version"], tls_recs[0]["cipher"]))
    fails.raise_if_any("transcript (pool + STARTTLS + 421 + failover)")


if __name__ == "__main__":
    h.main(run)
