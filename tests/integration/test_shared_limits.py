"""Two herald processes sending from the same egress IP share its path's
limits through Redis: the provider's rate (a GCRA in Redis, leased in
blocks of ~100 ms) and its connection limit (grants that expire when a
process dies).

Measured before: two processes at 10/s on one IP delivered 6.9/s together
and held 3 connections where 2 were allowed. Here, with 10/s and 2
connections and two workers per process (each process is granted one
connection, fewer than its workers: any worker may use it, and one left
without hands the other's idle connection back to itself):
  1. the sink sees the two together at 10/s +/- 10% over the steady window;
  2. never more than 2 connections at once;
  3. no second after the start sees more than twice the rate (no burst of
     messages that waited for a connection);
  4. both processes deliver.
"""

import time

import harness as h


def run():
    fails = h.Failures()
    rec = h.tmpdir().join("shared.record")
    sink = h.start_sink(["--record", rec])
    redis = h.start_redis()
    n = 300
    h.xadd_jobs(redis, [{"id": "j%d" % i, "tenant": "acme", "to": "pat%d@clinic.test" % i,
                         "subject": "Reminder", "text": "9:00"} for i in range(n)])
    cfg = h.base_config(redis, sink.port)
    cfg["engine"]["workers"] = 2
    cfg["providers"] = {"p": {"mx": ["127.0.0.1"], "rate": "10/s", "connections": 2},
                        "default": {"connections": 2}}
    procs = [p for p, _ in h.run_nodes(cfg, 2)]
    h.wait_notes(redis, n, timeout=h.scaled(90), herald=procs[0])
    for p in procs:
        p.check()
        p.stop()
    sink.stop()
    st = sink.stats()

    ts = sorted(ms for ms, _ in h.sink_record(rec))
    fails.check(len(ts) == n, "the sink saw %d messages, want %d" % (len(ts), n))
    if len(ts) == n:
        t0, t1 = ts[0] + 3000, ts[-1] - 1000  # past the initial burst
        got = sum(1 for t in ts if t0 <= t < t1)
        rate = got * 1000.0 / max(1, t1 - t0)
        h.log("two processes together: %.2f msg/s (limit 10/s), at most %d connections at once"
              % (rate, st["max_concurrent"]))
        fails.check(9.0 <= rate <= 11.0, "shared rate: %.2f msg/s, want 10 +/- 10%%" % rate)
        # No burst either: messages admitted by the rate but held back by a
        # connection another process had must not pile up and leave at once.
        peak = max(sum(1 for u in ts if t <= u < t + 1000) for t in ts if t >= ts[0] + 2000)
        fails.check(peak <= 20, "at most 2x the rate in any second after the start: saw %d"
                    % peak)
        h.log("busiest second after the start: %d messages" % peak)
    fails.check(st["max_concurrent"] <= 2,
                "2 connections allowed across both processes; the sink saw %d at once"
                % st["max_concurrent"])
    shares = [h.delivered_by(p) for p in procs]
    h.log("deliveries per process: %s" % shares)
    fails.check(all(s > 0 for s in shares), "both processes should deliver: %s" % shares)
    fails.raise_if_any("limits shared by two processes")


if __name__ == "__main__":
    h.main(run)
