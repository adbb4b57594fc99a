"""Size limits never stall or crash the engine.

1. A job with a 10 MB field (engine.max_field_bytes at its 1 MiB default)
   gets a `rejected` note naming the field and the limit, while jobs around
   it are delivered.
2. engine.max_reply_bytes bounds what herald reads from Redis: a batch of
   ~900 KB jobs larger than the 4 MiB cap costs the connection (logged as
   redis_reply_too_large), herald reconnects, reads one entry at a time and
   every job is still delivered with exactly one terminal note."""

import time

import harness as h


def oversize_field(fails):
    sink = h.start_sink(["--latency-ms", "1"])
    redis = h.start_redis()
    cfg = h.write_config(h.base_config(redis, sink.port))
    jobs = [{"id": "small-%d" % i, "tenant": "acme", "to": "c%d@clinic.test" % i,
             "subject": "Reminder", "text": "See you tomorrow."} for i in range(20)]
    jobs.insert(10, {"id": "huge", "tenant": "acme", "to": "big@clinic.test",
                     "subject": "Reminder", "text": "x" * (10 * 1000 * 1000)})
    h.xadd_jobs(redis, jobs)
    herald = h.run_herald(cfg)
    ids = [j["id"] for j in jobs]
    h.wait_terminal(redis, ids, timeout=60, herald=herald)
    herald.check()
    herald.stop()
    by_job = h.notes_by_job(h.read_notes(redis))
    huge = by_job.get("huge", [])
    if fails.check(len(huge) == 1, "huge: expected one note, got %d" % len(huge)):
        n = huge[0]
        h.log("huge -> %s" % h.format_note(n))
        fails.check(n.get("event") == "rejected", "huge: expected rejected: %s" % h.format_note(n))
        fails.check(n.get("field") == "text", "huge: note should name field text: %s" %
                    h.format_note(n))
        fails.check("engine.max_field_bytes = 1048576" in n.get("reason", ""),
                    "huge: reason should give the 1 MiB limit: %s" % h.format_note(n))
    for j in ids:
        if j == "huge":
            continue
        ns = by_job.get(j, [])
        fails.check(len(ns) == 1 and ns[0].get("event") == "delivered",
                    "%s: expected one delivered note, got %s" % (
                        j, "; ".join(map(h.format_note, ns)) or "none"))
    sink.stop()


def reply_cap(fails):
    sink = h.start_sink(["--latency-ms", "1"])
    redis = h.start_redis()
    cfg = h.write_config(h.base_config(redis, sink.port, engine={
        "workers": 1, "ehlo": "test.herald", "claim_idle": "2s", "batch": 10,
        "max_reply_bytes": "4MiB"}))
    jobs = [{"id": "big-%d" % i, "tenant": "acme", "to": "c%d@clinic.test" % i,
             "subject": "Reminder", "text": ("line %d of a long letter\n" % i) * 36000}
            for i in range(12)]
    h.xadd_jobs(redis, jobs)
    herald = h.run_herald(cfg)
    ids = [j["id"] for j in jobs]
    h.wait_terminal(redis, ids, timeout=60, herald=herald)
    time.sleep(1)
    herald.check()
    herald.stop()
    err = herald.read_stderr()
    fails.check("event=redis_reply_too_large" in err,
                "expected herald to log redis_reply_too_large for a ~9 MB batch over a 4 MiB cap")
    by_job = h.notes_by_job(h.read_notes(redis))
    for j in ids:
        ns = [n for n in by_job.get(j, []) if h.is_terminal(n)]
        fails.check(len(ns) == 1 and ns[0].get("event") == "delivered",
                    "%s: expected one delivered note, got %s" % (
                        j, "; ".join(map(h.format_note, ns)) or "none"))
    sink.stop()
    h.log("reply cap: %d jobs delivered, sink accepted %s" % (len(ids), sink.messages_seen()))


def run():
    fails = h.Failures()
    oversize_field(fails)
    reply_cap(fails)
    fails.raise_if_any("size limits")


if __name__ == "__main__":
    h.main(run)
