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
}


def start_hostile(mode):
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hostile_smtp.py")
    for _ in range(5):
        port = h.free_port()
        proc = h.Proc("hostile-" + mode, [sys.executable, script, mode, str(port)])
        if h.wait_port(port, h.scaled(10), proc):
            return port
        proc.stop(timeout=2)
    raise h.TestFailure("hostile server %s did not start" % mode)


def run():
    good = h.start_aiosmtpd()
    redis = h.start_redis()
    routes = {"%s.test" % mode: "127.0.0.1:%d" % start_hostile(mode) for mode in MODES}
    routes["*"] = "127.0.0.1:%d" % good.port
    cfg = h.write_config(h.base_config(redis, good.port, routes=routes, delivery={
        "retry": ["10m"], "max_age": "1h",
        "timeouts": {"connect": "2s", "banner": "2s", "command": "2s", "data_end": "2s",
                     "idle": "2s"}}))
    jobs = [{"id": "job-" + mode, "tenant": "acme", "to": "client@%s.test" % mode,
             "subject": "Reminder", "text": "Tomorrow at 9:00\r\n" * 20} for mode in MODES]
    jobs.append({"id": "job-good", "tenant": "acme", "to": "client@fine.test",
                 "subject": "Reminder", "text": "Tomorrow at 9:00"})
    h.enqueue(cfg, jobs)
    herald = h.run_herald(cfg)
    h.wait_notes(redis, len(jobs), timeout=h.scaled(60), herald=herald)
    time.sleep(1)
    herald.check()  # still running: no fault took the process down
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
    ns = by_job.get("job-good", [])
    fails.check(len(ns) == 1 and ns[0].get("event") == "delivered",
                "good job: expected one delivered note, got %s" % (
                    "; ".join(map(h.format_note, ns)) or "none"))
    fails.check(good.count() == 1, "good server should hold 1 message, has %d" % good.count())
    fails.raise_if_any("hostile SMTP peers")


if __name__ == "__main__":
    h.main(run)
