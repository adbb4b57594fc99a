"""Graceful stop and Redis loss.

1. SIGTERM mid-run: herald stops taking jobs, finishes what it holds and
   exits 0 within the grace time; a second `herald run` finishes the rest;
   every job ends with exactly one terminal note.
2. redis-server (AOF on) restarted mid-run: herald reconnects by itself and
   carries on; every job still ends with exactly one terminal note."""

import time

import harness as h

N = 600


def jobs_for(prefix):
    return [{"id": "%s-%04d" % (prefix, i), "tenant": "acme" if i % 2 else "beta",
             "to": "client%04d@clinic%d.test" % (i, i % 3), "subject": "Reminder %d" % i,
             "text": "See you tomorrow."} for i in range(N)]


def check_one_terminal(redis, ids, fails, what):
    by_job = h.notes_by_job(h.read_notes(redis))
    for job_id in ids:
        terminal = [n for n in by_job.get(job_id, []) if h.is_terminal(n)]
        if len(terminal) != 1:
            fails.add("%s: %s has %d terminal notes" % (what, job_id, len(terminal)))


def wait_count(redis, at_least, timeout):
    deadline = time.monotonic() + h.scaled(timeout)
    while time.monotonic() < deadline:
        try:
            if redis.client.xlen(h.EVENTS_STREAM) >= at_least:
                return True
        except Exception:
            pass
        time.sleep(0.02)
    return False


def sigterm_drain(fails):
    sink = h.start_sink(["--latency-ms", "10"])
    redis = h.start_redis()
    cfg = h.write_config(h.base_config(redis, sink.port, engine={
        "workers": 2, "ehlo": "test.herald", "claim_idle": "30s", "shutdown_grace": "10s",
        "max_inflight": 40, "batch": 20},
        providers={"default": {"connections": 4, "messages_per_connection": 50}}))
    jobs = jobs_for("term")
    ids = [j["id"] for j in jobs]
    h.enqueue(cfg, jobs)
    herald = h.run_herald(cfg)
    fails.check(wait_count(redis, N // 4, 60), "no progress before SIGTERM")
    t0 = time.monotonic()
    herald.stop(timeout=15)  # raises unless exit 0 within the grace
    noted = redis.client.xlen(h.EVENTS_STREAM)
    h.log("SIGTERM: exit 0 after %.2fs with %d notes" % (time.monotonic() - t0, noted))
    fails.check(noted < N, "the drain should stop taking jobs, yet all %d were noted" % N)
    # claim_idle is 30s: the rest can only finish quickly if the drain
    # handed it back to the consumer's own pending list or left it unread.
    second = h.run_herald(cfg)
    h.wait_terminal(redis, ids, timeout=60, herald=second)
    second.stop()
    check_one_terminal(redis, ids, fails, "sigterm")
    sink.stop()
    fails.check(sink.messages_seen() == N, "sink accepted %s messages, expected %d (a clean "
                "stop must not send anything twice)" % (sink.messages_seen(), N))


def redis_restart(fails):
    sink = h.start_sink(["--latency-ms", "5"])
    redis = h.start_redis(persist=True)
    cfg = h.write_config(h.base_config(redis, sink.port, providers={
        "default": {"connections": 4, "messages_per_connection": 50}}))
    jobs = jobs_for("rr")
    ids = [j["id"] for j in jobs]
    h.enqueue(cfg, jobs)
    herald = h.run_herald(cfg)
    fails.check(wait_count(redis, N // 4, 60), "no progress before the Redis restart")
    redis.restart()
    h.log("redis restarted with %d notes" % redis.client.xlen(h.EVENTS_STREAM))
    h.wait_terminal(redis, ids, timeout=90, herald=herald)
    herald.check()
    herald.stop()
    check_one_terminal(redis, ids, fails, "redis restart")
    sink.stop()
    # Notes Redis did not answer are re-sent on reconnect rather than the
    # jobs being delivered again, so a Redis restart costs no duplicates.
    fails.check(sink.messages_seen() == N, "sink accepted %s messages for %d jobs across a "
                "Redis restart" % (sink.messages_seen(), N))


def run():
    fails = h.Failures()
    sigterm_drain(fails)
    redis_restart(fails)
    fails.raise_if_any("graceful stop and Redis restart")


if __name__ == "__main__":
    h.main(run)
