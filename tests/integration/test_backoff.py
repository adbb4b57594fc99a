"""Back-off that converges, measured at the sink: herald-sink answers
421 4.7.0 above 20 messages a second (its --limit-rate, a receiver's hidden
limit) for the first 40 s, herald is configured at 200/s for that provider
with one egress IP and 3000 jobs queued.

  1. Between 20 s and 30 s after herald starts, 421s are under 20% of the
     messages accepted and the accepted rate is at least 80% of the hidden
     limit (16/s) -- and at most the limit, or the sink would be lying.
  2. Once the limit is lifted herald climbs back to at least 150/s of its
     200/s. The test shortens reputation.interval from 30 s to 2 s (15x) so
     this takes seconds, not minutes; it asserts 45 s (about 22 intervals;
     the unit simulation needs 4 to 5, tests/unit/test_throttle.c), the
     same as under 12 minutes with the default interval.
  3. Every job is delivered in the end (the refused ones retry after 1 s).

Windows are measured from the sink's --stats snapshots (rewritten every
second with their own time stamp, at_ms) and --record arrival times, so a
slow machine shifts the windows a little but does not change the counts.
"""

import time

import harness as h

LIMIT = 20
LIFT_MS = 40000
N_JOBS = 3000


def job(i):
    return {"id": "k%d" % i, "tenant": "acme", "to": "p%d@clinic.test" % i,
            "subject": "Reminder", "text": "9:00"}


def snapshot_at(snaps, ms, after):
    """The first snapshot at or after ms (after=True), or the last at or
    before it."""
    if after:
        return next((s for s in snaps if s["at_ms"] >= ms), None)
    return next((s for s in reversed(snaps) if s["at_ms"] <= ms), None)


def run():
    fails = h.Failures()
    rec = h.tmpdir().join("backoff.record")
    sink_started_ms = time.time() * 1000
    sink = h.start_sink(["--record", rec, "--limit-rate", str(LIMIT),
                         "--limit-for", str(LIFT_MS)])
    lift_ms = sink_started_ms + LIFT_MS  # at most a little earlier than the sink's own
    redis = h.start_redis()
    cfg = h.base_config(redis, sink.port)
    cfg["egress"] = {"default": ["127.0.0.1"]}
    cfg["providers"] = {"p": {"mx": ["127.0.0.1"], "rate": "200/s", "connections": 20},
                        "default": {"connections": 4}}
    cfg["delivery"] = {"retry": ["1s"], "max_age": "1h", "timeouts": {"idle": "2s"}}
    cfg["reputation"] = {"interval": "2s"}  # everything else at its default
    path = h.write_config(cfg, "backoff.yaml")
    h.xadd_jobs(redis, [job(i) for i in range(N_JOBS)])
    start_ms = time.time() * 1000
    herald = h.run_herald(path)
    fails.check(start_ms + 30000 < lift_ms - 1000,
                "herald started %.1f s after the sink: the 20-30 s window would reach the "
                "lift" % ((start_ms - sink_started_ms) / 1000))

    # Sample the sink's stats until everything is delivered.
    snaps = []
    ids = ["k%d" % i for i in range(N_JOBS)]
    deadline = time.time() + h.scaled(150)
    delivered = 0
    last_poll = 0
    while time.time() < deadline:
        try:
            st = sink.stats()
            if not snaps or st.get("at_ms") != snaps[-1]["at_ms"]:
                snaps.append(st)
        except (OSError, ValueError):
            pass
        if time.time() - last_poll > 2:
            last_poll = time.time()
            delivered = int(redis.client.xlen(h.EVENTS_STREAM))
            if delivered >= N_JOBS and snaps and snaps[-1]["messages"] >= N_JOBS:
                break
        if not herald.alive():
            break
        time.sleep(0.2)
    h.wait_terminal(redis, ids, timeout=h.scaled(60), herald=herald)
    herald.stop()
    sink.stop()

    # 1. converged within 30 s
    a = snapshot_at(snaps, start_ms + 20000, after=True)
    b = snapshot_at(snaps, start_ms + 30000, after=False)
    if not a or not b or b["at_ms"] - a["at_ms"] < 5000:
        fails.check(False, "no stats snapshots around 20-30 s (%d snapshots)" % len(snaps))
    else:
        secs = (b["at_ms"] - a["at_ms"]) / 1000.0
        acc = b["messages"] - a["messages"]
        ref = b["rate_refused"] - a["rate_refused"]
        rate = acc / secs
        share = ref / float(acc) if acc else 1.0
        h.log("%.0f-%.0f s after start: %d accepted (%.1f/s), %d refused with 421 (%.1f%% of "
              "accepted); hidden limit %d/s" % ((a["at_ms"] - start_ms) / 1000,
                                                (b["at_ms"] - start_ms) / 1000, acc, rate, ref,
                                                share * 100, LIMIT))
        fails.check(share < 0.20, "421s should be under 20%% of accepted messages after 20 s, "
                    "were %.1f%%" % (share * 100))
        fails.check(rate >= 0.8 * LIMIT, "accepted %.1f/s after 20 s, want at least %.0f/s"
                    % (rate, 0.8 * LIMIT))
        fails.check(rate <= LIMIT * 1.1, "accepted %.1f/s, above the sink's limit?" % rate)
    early = snapshot_at(snaps, start_ms + 5000, after=False)
    if early and early["rate_refused"] == 0:
        fails.check(False, "the sink refused nothing in the first 5 s: was the limit on?")

    # 2. recovery after the lift: the first 2 s at 150/s or more
    arrivals = sorted(ms for ms, _ in h.sink_record(rec))
    back_ms = None
    j = 0
    for i, t in enumerate(arrivals):
        if t < lift_ms:
            continue
        while arrivals[j] < t - 2000:
            j += 1
        if i - j + 1 >= 300:
            back_ms = t - lift_ms
            break
    per_s = {}
    for t in arrivals:
        k = int((t - lift_ms) // 1000)
        if -3 <= k <= 40:
            per_s[k] = per_s.get(k, 0) + 1
    h.log("per second around the lift (s after it: accepted): %s" % sorted(per_s.items()))
    if back_ms is None:
        fails.check(False, "herald never reached 150/s after the limit was lifted")
    else:
        h.log("back at >= 150/s (over 2 s) %.1f s after the limit was lifted" % (back_ms / 1000))
        fails.check(back_ms <= 45000, "recovery took %.1f s, want at most 45 s with "
                    "interval 2s" % (back_ms / 1000))

    # 3. everything delivered in the end
    notes = h.read_notes(redis)
    done = {x["job"] for x in notes if x.get("event") == "delivered"}
    fails.check(len(done) == N_JOBS, "all %d should be delivered, %d were" % (N_JOBS, len(done)))
    deferred = sum(1 for x in notes if x.get("event") == "deferred")
    final = snaps[-1] if snaps else {}
    h.log("sink: %s accepted, %s refused in all; %d deferred notes"
          % (final.get("messages"), final.get("rate_refused"), deferred))
    fails.check("event=reputation_backoff" in herald.read_stderr(),
                "the reputation factor should have been lowered")
    fails.raise_if_any("back-off")


if __name__ == "__main__":
    h.main(run)
