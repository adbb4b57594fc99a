"""Broken and hostile SMTP servers cost one connection and one deferral,
never the engine: a silent server and a one-byte-a-second banner hit the
banner timeout, garbage and an endless multiline reply are protocol errors,
and a connection dropped mid-DATA is `deferred`, never `delivered`. A good
job routed to a good server in the same run is delivered meanwhile."""

import os
import sys
import time

import harness as h

MODES = {
    # mode: (expected category, words expected in the reply)
    "silent": ("timeout", "timed out"),
    "slowbanner": ("timeout", "timed out"),
    "garbage": ("protocol", "protocol"),
    "endless": ("protocol", "protocol"),
    "dropdata": ("network", "closed"),
    "bigline": ("protocol", "protocol"),
    "early": ("protocol", "protocol"),
    "data250": ("protocol", "protocol"),
}


def start_hostile(mode, *extra):
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hostile_smtp.py")
    for _ in range(5):
        port = h.free_port()
        proc = h.Proc("hostile-" + mode,
                      [sys.executable, script, mode, str(port), "127.0.0.1"] + list(extra))
        if h.wait_port(port, h.scaled(10), proc):
            return port
        proc.stop(timeout=2)
    raise h.TestFailure("hostile server %s did not start" % mode)


def rss_of(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def run():
    good = h.start_aiosmtpd()
    redis = h.start_redis()
    routes = {"%s.test" % mode: "127.0.0.1:%d" % start_hostile(mode) for mode in MODES}
    midtls_count = h.tmpdir().unique("midtls") + ".count"
    routes["midtls.test"] = "127.0.0.1:%d" % start_hostile("midtls", midtls_count)
    routes["*"] = "127.0.0.1:%d" % good.port
    cfg = h.write_config(h.base_config(redis, good.port, routes=routes, delivery={
        "retry": ["10m"], "max_age": "1h",
        "timeouts": {"connect": "2s", "banner": "2s", "command": "2s", "data_end": "2s",
                     "idle": "2s"}}))
    jobs = [{"id": "job-" + mode, "tenant": "acme", "to": "client@%s.test" % mode,
             "subject": "Reminder", "text": "Tomorrow at 9:00\r\n" * 20}
            for mode in list(MODES) + ["midtls"]]
    jobs.append({"id": "job-good", "tenant": "acme", "to": "client@fine.test",
                 "subject": "Reminder", "text": "Tomorrow at 9:00"})
    h.enqueue(cfg, jobs)
    herald = h.run_herald(cfg)
    h.wait_notes(redis, len(jobs), timeout=h.scaled(60), herald=herald)
    time.sleep(1)
    herald.check()  # still running: no fault took the process down
    rss_kb = rss_of(herald.pid)
    herald.stop()

    by_job = h.notes_by_job(h.read_notes(redis))
    fails = h.Failures()
    for mode, (category, words) in MODES.items():
        ns = by_job.get("job-" + mode, [])
        if len(ns) != 1:
            fails.add("%s: expected exactly one note, got %s" % (
                mode, "; ".join(map(h.format_note, ns)) or "none"))
            continue
        n = ns[0]
        fails.check(n.get("event") == "deferred",
                    "%s: expected deferred, got %s" % (mode, h.format_note(n)))
        fails.check(n.get("category") == category,
                    "%s: expected category %s, got %s" % (mode, category, h.format_note(n)))
        fails.check(words in n.get("reply", "").lower(),
                    "%s: reply should mention %r: %s" % (mode, words, h.format_note(n)))
        fails.check(n.get("next_attempt_at", "").isdigit(),
                    "%s: deferred note needs next_attempt_at: %s" % (mode, h.format_note(n)))
        h.log("%s -> %s" % (mode, h.format_note(n)))
    # A connection that dies inside the TLS handshake: opportunistic TLS
    # retries the host in plaintext and the note says so.
    ns = by_job.get("job-midtls", [])
    n = ns[0] if len(ns) == 1 else {}
    fails.check(n.get("event") == "delivered" and n.get("tls") == "none"
                and "STARTTLS failed" in n.get("tls_note", ""),
                "midtls: expected one delivered note without TLS and a tls_note, got %s" % (
                    "; ".join(map(h.format_note, ns)) or "none"))
    stored = open(midtls_count).read().count("message") if os.path.exists(midtls_count) else 0
    fails.check(stored == 1, "midtls: server stored %d messages, expected 1" % stored)
    # A 1 MB line and an endless reply are read through bounded buffers.
    limit_kb = 400 * 1024 if h.TIME_SCALE > 1 else 100 * 1024
    fails.check(0 < rss_kb < limit_kb, "engine RSS %d kB after the hostile peers (limit %d kB)"
                % (rss_kb, limit_kb))
    h.log("engine RSS after hostile peers: %d kB" % rss_kb)
    ns = by_job.get("job-good", [])
    fails.check(len(ns) == 1 and ns[0].get("event") == "delivered",
                "good job: expected one delivered note, got %s" % (
                    "; ".join(map(h.format_note, ns)) or "none"))
    fails.check(good.count() == 1, "good server should hold 1 message, has %d" % good.count())
    fails.raise_if_any("hostile SMTP peers")


if __name__ == "__main__":
    h.main(run)
