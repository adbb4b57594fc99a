"""Rates that hold under any backlog, measured at the receiver: herald-sink
--record writes each accepted message's arrival time (wall ms) and the
client's source IP, so the rate is counted per egress IP at the sink.

  A. 2 egress IPs (127.0.0.2, 127.0.0.3), provider rate 600/m per IP,
     2 workers, 400 jobs: each IP's rate over its steady window (from its
     first arrival + 3 s, past the GCRA's one-second burst, to its last
     arrival - 2 s, where the queue runs dry) is 10/s within 5%.
  B. 1 egress IP, 4 workers, 20/s, 3000 jobs: far more than the in-memory
     horizon (each worker keeps ~10 s of the pair's rate, 200 jobs; the
     rest is parked in the retry set and must come back before the
     in-memory queues run dry). The rate over 20 s from first arrival + 3 s
     is 20/s within 5%; then a SIGHUP (the same config: the parked jobs
     are recalled and priced again) and the rate over the 10 s right after
     it must still be 20/s within 5% (a reload must not hand a saturated
     pair a fresh burst). The test stops herald then, with most of the
     backlog undelivered (that is not what is measured).
  C. 1 worker, 10 jobs at 5/s: all delivered, and none faster than the
     GCRA allows: message k (0-based) no earlier than first + (k - 4) x
     200 ms (a burst of 5, then one every 200 ms), with 30 ms for the
     sink's clock and the connection; and no 1 s window holds more than
     limit + burst = 10.

The rate itself is held by herald's clock, so the windows are not scaled
for slow (ASan) builds; only the timeouts are.
"""

import collections
import json
import os
import signal
import time

import harness as h

TOL = 0.05


def job(prefix, i):
    return {"id": "%s%d" % (prefix, i), "tenant": "acme", "to": "p%d@clinic.test" % i,
            "subject": "Reminder", "text": "9:00"}


def count_between(ts, t0, t1):
    return sum(1 for t in ts if t0 <= t < t1)


def rate_between(ts, t0, t1):
    return count_between(ts, t0, t1) * 1000.0 / (t1 - t0)


def per_second(ts, origin):
    c = collections.Counter(int((t - origin) // 1000) for t in ts)
    return [c.get(k, 0) for k in range(0, max(c) + 1)] if c else []


def by_ip(rec):
    out = collections.defaultdict(list)
    for ms, ip in h.sink_record(rec):
        out[ip].append(ms)
    for ts in out.values():
        ts.sort()
    return out


def status(path):
    cp = h.herald_cli(["status", "-c", path, "--json"], timeout=20)
    if cp.returncode != 0:
        return None
    try:
        return json.loads(cp.stdout)
    except ValueError:
        return None


def pair_summary(doc):
    """retry set size, and per pair: waiting in memory, parked by reason, sent."""
    if not doc:
        return "status unavailable"
    q = doc.get("queue", {})
    parts = ["retry=%s stream=%s" % (q.get("retry"), q.get("stream"))]
    for p in doc.get("processes", [{}])[0].get("pairs", []) if doc.get("processes") else []:
        parts.append("%s|%s sent=%s waiting=%s parked=%s rate=%.0f/m factor=%.2f" % (
            p.get("ip"), p.get("provider"), p.get("sent"), p.get("waiting"),
            p.get("parked"), p.get("rate_per_min", 0), p.get("factor", 0)))
    return " ".join(parts)


def check_rate(fails, what, ts, t0, t1, want):
    got = count_between(ts, t0, t1)
    rate = got * 1000.0 / (t1 - t0)
    h.log("%s: %d messages in %.1f s = %.2f/s (want %g/s +/- %d%%)"
          % (what, got, (t1 - t0) / 1000.0, rate, want, TOL * 100))
    fails.check(abs(rate - want) <= TOL * want,
                "%s: %.2f msg/s over %.1f s, want %g +/- %d%%"
                % (what, rate, (t1 - t0) / 1000.0, want, TOL * 100))
    return rate


def wait_first_arrival(rec, herald, timeout):
    deadline = time.monotonic() + h.scaled(timeout)
    while time.monotonic() < deadline:
        herald.check()
        if os.path.exists(rec):
            a = h.sink_record(rec)
            if a:
                return min(ms for ms, _ in a)
        time.sleep(0.1)
    raise h.TestFailure("no message reached the sink within %.0f s" % h.scaled(timeout))


def sleep_until_wall(ms, herald, sample=None, every=2.0):
    """Sleep until wall time ms, calling sample() every `every` seconds."""
    next_sample = time.monotonic()
    while True:
        left = ms / 1000.0 - time.time()
        if left <= 0:
            return
        herald.check()
        if sample and time.monotonic() >= next_sample:
            sample()
            next_sample = time.monotonic() + every
        time.sleep(min(0.2, left))


# --------------------------------------------------------------------------

def scenario_a(fails):
    rec = h.tmpdir().join("a.record")
    sink = h.start_sink(["--record", rec])
    redis = h.start_redis()
    cfg = h.base_config(redis, sink.port)
    cfg["engine"]["workers"] = 2
    cfg["egress"] = {"default": ["127.0.0.2", "127.0.0.3"]}
    cfg["providers"] = {"p": {"mx": ["127.0.0.1"], "rate": "600/m", "connections": 4},
                        "default": {"connections": 4}}
    cfg["delivery"] = {"retry": ["1s"], "max_age": "1h", "timeouts": {"idle": "2s"}}
    path = h.write_config(cfg, "a.yaml")
    n = 400
    h.xadd_jobs(redis, [job("a", i) for i in range(n)])
    herald = h.run_herald(path)
    h.wait_notes(redis, n, timeout=60, herald=herald)
    herald.stop()
    sink.stop()
    ips = by_ip(rec)
    total = sum(len(v) for v in ips.values())
    fails.check(total == n, "A: the sink should have %d messages, has %d" % (n, total))
    fails.check(sorted(ips) == ["127.0.0.2", "127.0.0.3"],
                "A: both egress IPs should be used: %s" % sorted(ips))
    for ip, ts in sorted(ips.items()):
        h.log("A: %s sent %d, per second from its first: %s" % (ip, len(ts),
                                                                 per_second(ts, ts[0])))
        t0, t1 = ts[0] + 3000, ts[-1] - 2000
        if not fails.check(t1 - t0 >= 5000, "A: %s: steady window only %d ms (%d messages)"
                           % (ip, t1 - t0, len(ts))):
            continue
        check_rate(fails, "A: egress %s (600/m, 2 IPs, 2 workers)" % ip, ts, t0, t1, 10.0)


def scenario_b(fails):
    rate = 20
    n = 3000
    window_ms = 20000
    reload_window_ms = 10000
    rec = h.tmpdir().join("b.record")
    sink = h.start_sink(["--record", rec])
    redis = h.start_redis()
    cfg = h.base_config(redis, sink.port)
    cfg["engine"]["workers"] = 4
    cfg["engine"]["shutdown_grace"] = "1s"  # the backlog is not meant to finish
    cfg["egress"] = {"default": ["127.0.0.2"]}
    cfg["providers"] = {"p": {"mx": ["127.0.0.1"], "rate": "%d/s" % rate, "connections": 4},
                        "default": {"connections": 4}}
    cfg["delivery"] = {"retry": ["1s"], "max_age": "1h", "timeouts": {"idle": "2s"}}
    path = h.write_config(cfg, "b.yaml")
    h.xadd_jobs(redis, [job("b", i) for i in range(n)])
    herald = h.run_herald(path)
    first = wait_first_arrival(rec, herald, 20)
    samples = []

    def sample():
        doc = status(path)
        samples.append((time.time(), doc))
        h.log("B: %s" % pair_summary(doc))

    # 1. the backlog far past the horizon, from first + 3 s for 20 s
    w1 = (first + 3000, first + 3000 + window_ms)
    sleep_until_wall(w1[1] + 500, herald, sample)
    # 2. a reload with the same config, then the 10 s right after it
    hup = int(time.time() * 1000)
    os.kill(herald.pid, signal.SIGHUP)
    w2 = (hup, hup + reload_window_ms)
    sleep_until_wall(w2[1] + 1500, herald, sample)
    herald.check()
    log = herald.read_stderr()
    fails.check("event=reloaded generation=2" in log, "B: no event=reloaded after SIGHUP")
    recalled = [l for l in log.splitlines() if "event=parked_recalled" in l]
    h.log("B: %s" % (recalled or "no parked_recalled line"))
    herald.stop(expect_clean=False)
    sink.stop()

    ips = by_ip(rec)
    fails.check(sorted(ips) == ["127.0.0.2"], "B: one egress IP: %s" % sorted(ips))
    ts = ips.get("127.0.0.2", [])
    h.log("B: %d of %d delivered before the stop; per second from the first: %s"
          % (len(ts), n, per_second(ts, first)))
    h.log("B: per second from the SIGHUP: %s" % per_second([t for t in ts if t >= hup], hup))
    check_rate(fails, "B: before reload (20/s, 4 workers, %d queued)" % n, ts, w1[0], w1[1],
               rate)
    check_rate(fails, "B: the 10 s right after SIGHUP", ts, w2[0], w2[1], rate)
    h.log("B: first 1 s after SIGHUP: %d messages (one second's worth at the limit: %d)"
          % (count_between(ts, hup, hup + 1000), rate))
    # The backlog really was past the horizon: jobs were parked for rate.
    docs = [d for _, d in samples if d and d.get("processes")]
    parked = 0
    peak_retry = 0
    for d in docs:
        for p in d["processes"][0].get("pairs", []):
            parked = max(parked, int(p.get("parked", {}).get("rate", 0)))
        peak_retry = max(peak_retry, int(d.get("queue", {}).get("retry", 0)))
    h.log("B: parked for rate (cumulative, last seen) %d; retry set peak %d" % (parked, peak_retry))
    fails.check(parked > 0 and peak_retry > 0,
                "B: the backlog should have been parked past the horizon (parked %d, retry "
                "set peak %d)" % (parked, peak_retry))


def scenario_c(fails):
    rate, n, burst = 5, 10, 5
    rec = h.tmpdir().join("c.record")
    sink = h.start_sink(["--record", rec])
    redis = h.start_redis()
    cfg = h.base_config(redis, sink.port)
    cfg["engine"]["workers"] = 1
    cfg["egress"] = {"default": ["127.0.0.2"]}
    cfg["providers"] = {"p": {"mx": ["127.0.0.1"], "rate": "%d/s" % rate, "connections": 4},
                        "default": {"connections": 4}}
    path = h.write_config(cfg, "c.yaml")
    h.xadd_jobs(redis, [job("c", i) for i in range(n)])
    herald = h.run_herald(path)
    notes = h.wait_terminal(redis, ["c%d" % i for i in range(n)], timeout=30, herald=herald)
    herald.stop()
    sink.stop()
    delivered = {x["job"] for x in notes if x.get("event") == "delivered"}
    fails.check(len(delivered) == n, "C: all %d delivered, %d were" % (n, len(delivered)))
    ts = sorted(ms for ms, _ in h.sink_record(rec))
    fails.check(len(ts) == n, "C: the sink should have %d messages, has %d" % (n, len(ts)))
    if not ts:
        return
    h.log("C: arrivals (ms after the first): %s" % [t - ts[0] for t in ts])
    gap = 1000 // rate
    early = [(k, ts[k] - ts[0]) for k in range(burst, len(ts))
             if ts[k] - ts[0] < (k - burst + 1) * gap - 30]
    fails.check(not early, "C: messages faster than %d/s with a burst of %d allows "
                "(index, ms after the first): %s" % (rate, burst, early))
    worst = max(count_between(ts, t, t + 1000) for t in ts)
    fails.check(worst <= rate + burst, "C: %d messages within 1 s, at most %d allowed"
                % (worst, rate + burst))


def run():
    fails = h.Failures()
    scenario_c(fails)
    scenario_a(fails)
    scenario_b(fails)
    fails.raise_if_any("rates that hold")


if __name__ == "__main__":
    h.main(run)
