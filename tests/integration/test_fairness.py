"""Fair share under a binding limit (the provider takes 300 msg/s):
  1. tenant A enqueues 50,000 reminders, then tenant B 10: B's p99
     enqueue-to-delivered latency stays within a few seconds (the time to
     read past A's backlog), and A keeps sending meanwhile;
  2. priority lanes: 20,000 bulk jobs queued, then 100 high ones: the high
     ones are all delivered while most of the bulk still waits, and bulk
     keeps moving in the meantime (weighted, not strict).
Latency comes from the notes' latency_ms (enqueue -> note)."""

import time

import harness as h


def config(redis, sink_port):
    cfg = h.base_config(redis, sink_port)
    cfg["providers"] = {"p": {"mx": ["127.0.0.1"], "rate": "300/s", "connections": 8},
                        "default": {"connections": 8}}
    cfg["delivery"] = {"retry": ["1s"], "max_age": "1h", "timeouts": {"idle": "5s"}}
    return cfg


def delivered(redis, prefix):
    return [n for n in h.read_notes(redis)
            if n.get("event") == "delivered" and n.get("job", "").startswith(prefix)]


def wait_for(redis, prefix, n, timeout, herald):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = delivered(redis, prefix)
        if len(got) >= n:
            return got
        herald.check()
        time.sleep(0.2)
    return delivered(redis, prefix)


def phase_tenants(fails):
    sink = h.start_sink()
    redis = h.start_redis()
    path = h.write_config(config(redis, sink.port), "fair.yaml")
    herald = h.run_herald(path)
    time.sleep(1)
    n_a = 50000
    batch = 5000
    for k in range(0, n_a, batch):
        h.xadd_jobs(redis, [{"id": "a%d" % i, "tenant": "acme", "to": "pat%d@clinic.test" % i,
                             "subject": "Reminder", "text": "9:00"} for i in range(k, k + batch)])
    time.sleep(0.5)
    h.xadd_jobs(redis, [{"id": "b%d" % i, "tenant": "beta", "to": "kim%d@clinic.test" % i,
                         "subject": "Reminder", "text": "9:00"} for i in range(10)])
    got = wait_for(redis, "b", 10, h.scaled(60), herald)
    a_done = len(delivered(redis, "a"))
    herald.stop()
    sink.stop()
    lat = sorted(int(n["latency_ms"]) for n in got)
    h.log("tenant B latencies (ms) behind 50,000 of tenant A: %s; A delivered so far %d"
          % (lat, a_done))
    fails.check(len(lat) == 10, "all 10 of B should be delivered, %d were" % len(lat))
    limit_ms = 5000 * h.TIME_SCALE
    fails.check(lat and lat[-1] <= limit_ms,
                "B's p99 latency %s ms, want <= %d ms" % (lat[-1] if lat else None, limit_ms))
    fails.check(a_done > 300, "A should keep sending meanwhile: %d delivered" % a_done)


def phase_priority(fails):
    sink = h.start_sink()
    redis = h.start_redis()
    path = h.write_config(config(redis, sink.port), "prio.yaml")
    n_bulk = 20000
    for k in range(0, n_bulk, 5000):
        h.xadd_jobs(redis, [{"id": "l%d" % i, "tenant": "acme", "to": "pat%d@clinic.test" % i,
                             "subject": "Newsletter", "text": "news", "priority": "bulk"}
                            for i in range(k, k + 5000)])
    herald = h.run_herald(path)
    time.sleep(h.scaled(3))
    bulk_before = len(delivered(redis, "l"))
    h.xadd_jobs(redis, [{"id": "h%d" % i, "tenant": "acme", "to": "urgent%d@clinic.test" % i,
                         "subject": "Appointment moved", "text": "now 8:30",
                         "priority": "high"} for i in range(100)])
    got = wait_for(redis, "h", 100, h.scaled(60), herald)
    bulk_after = len(delivered(redis, "l"))
    herald.stop()
    sink.stop()
    lat = sorted(int(n["latency_ms"]) for n in got)
    h.log("high: 100 delivered, latency p50 %s ms p99 %s ms; bulk delivered %d before, %d by "
          "then (of %d)" % (lat[len(lat) // 2] if lat else None, lat[-1] if lat else None,
                            bulk_before, bulk_after, n_bulk))
    fails.check(len(got) == 100, "all 100 high should be delivered, %d were" % len(got))
    fails.check(bulk_after < n_bulk / 2,
                "high should go before most of the bulk: %d bulk delivered first" % bulk_after)
    fails.check(bulk_after > bulk_before, "bulk must keep moving while high goes: %d -> %d"
                % (bulk_before, bulk_after))
    fails.check(lat and lat[-1] <= 5000 * h.TIME_SCALE,
                "high p99 %s ms behind 20,000 bulk" % (lat[-1] if lat else None))


def run():
    fails = h.Failures()
    phase_tenants(fails)
    phase_priority(fails)
    fails.raise_if_any("fair share and priority lanes")


if __name__ == "__main__":
    h.main(run)
