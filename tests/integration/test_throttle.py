"""Throttling measured at the sink (herald-sink records arrival time and
client IP):
  1. a per-IP provider rate (scaled from 600/m to 20/s for a short test)
     holds within 10% for each of two egress IPs, over the steady part;
  2. a recipient cap of 2/h: of 10 jobs to one address 2 are delivered, 8
     wait (deferred, category recipient-cap) and end `expired` when their
     expires_at passes;
  3. a receiver's hidden limit (421 above 30 msg/s for 6 s): herald's
     reputation factor backs off so refusals stop while the limit holds,
     everything is delivered, and the rate recovers once the limit is lifted.
"""

import collections
import time

import harness as h


def job(job_id, to, **kw):
    j = {"id": job_id, "tenant": "acme", "to": to, "subject": "Reminder", "text": "9:00"}
    j.update(kw)
    return j


def phase_rate(fails):
    rec = h.tmpdir().join("rate.record")
    sink = h.start_sink(["--record", rec])
    redis = h.start_redis()
    cfg = h.base_config(redis, sink.port)
    cfg["egress"] = {"default": ["127.0.0.1", "127.0.0.2"]}
    cfg["providers"] = {"p": {"mx": ["127.0.0.1"], "rate": "1200/m", "connections": 4},
                        "default": {"connections": 4}}
    path = h.write_config(cfg, "rate.yaml")
    n = 480
    h.xadd_jobs(redis, [job("r%d" % i, "pat%d@clinic.test" % i) for i in range(n)])
    herald = h.run_herald(path)
    h.wait_notes(redis, n, timeout=60, herald=herald)
    herald.stop()
    sink.stop()
    a = h.sink_record(rec)
    fails.check(len(a) == n, "sink should have recorded %d messages, has %d" % (n, len(a)))
    by_ip = collections.defaultdict(list)
    for ms, ip in a:
        by_ip[ip].append(ms)
    fails.check(sorted(by_ip) == ["127.0.0.1", "127.0.0.2"],
                "both egress IPs should be used: %s" % sorted(by_ip))
    for ip, ts in sorted(by_ip.items()):
        ts.sort()
        # Skip the first second (the allowed burst) and the tail.
        t0 = ts[0] + 1500
        t1 = t0 + 6000
        got = sum(1 for t in ts if t0 <= t < t1)
        rate = got / 6.0
        h.log("egress %s: %d messages, %.1f/s over the steady 6 s (want 20/s)"
              % (ip, len(ts), rate))
        fails.check(18.0 <= rate <= 22.0, "egress %s: %.1f msg/s, want 20 +/- 10%%" % (ip, rate))


def phase_recipient_cap(fails):
    smtp = h.start_aiosmtpd()
    redis = h.start_redis()
    cfg = h.base_config(redis, smtp.port, recipients={"limit": ["2/h"]})
    path = h.write_config(cfg, "cap.yaml")
    exp = str(int(time.time() * 1000) + 4000)
    jobs = [job("cap%d" % i, "Flooded@clinic.test", expires_at=exp) for i in range(10)]
    h.xadd_jobs(redis, jobs)
    herald = h.run_herald(path)
    h.wait_terminal(redis, [j["id"] for j in jobs], timeout=30, herald=herald)
    herald.stop()
    notes = h.read_notes(redis)
    by = h.notes_by_job(notes)
    ends = collections.Counter(next((n["event"] for n in by[j["id"]] if h.is_terminal(n)), "?")
                               for j in jobs)
    fails.check(ends == {"delivered": 2, "expired": 8},
                "recipient cap 2/h: want 2 delivered, 8 expired; got %s" % dict(ends))
    waited = [n for n in notes if n.get("event") == "deferred"
              and n.get("category") == "recipient-cap"]
    fails.check(len(waited) == 8, "8 jobs should have waited with a recipient-cap note, %d did"
                % len(waited))
    fails.check(smtp.count() == 2, "the patient should get 2 messages, got %d" % smtp.count())


def phase_backoff(fails):
    rec = h.tmpdir().join("backoff.record")
    sink = h.start_sink(["--record", rec, "--limit-rate", "30", "--limit-for", "6000"])
    start = time.time()
    redis = h.start_redis()
    cfg = h.base_config(redis, sink.port)
    cfg["providers"] = {"p": {"mx": ["127.0.0.1"], "rate": "100/s", "connections": 4},
                        "default": {"connections": 4}}
    cfg["delivery"] = {"retry": ["1s"], "max_age": "1h", "timeouts": {"idle": "2s"}}
    cfg["reputation"] = {"min": 0.1, "max": 1.0, "decrease": 0.5, "increase": 0.25,
                         "interval": "1s"}
    path = h.write_config(cfg, "backoff.yaml")
    n = 700
    h.xadd_jobs(redis, [job("b%d" % i, "p%d@clinic.test" % i) for i in range(n)])
    herald = h.run_herald(path)
    h.wait_terminal(redis, ["b%d" % i for i in range(n)], timeout=90, herald=herald)
    herald.stop()
    sink.stop()
    st = sink.stats()
    notes = h.read_notes(redis)
    delivered = {x["job"] for x in notes if x.get("event") == "delivered"}
    fails.check(len(delivered) == n, "all %d should be delivered, %d were" % (n, len(delivered)))
    refused = st.get("rate_refused", 0)
    h.log("sink refused %d MAIL commands with 421 (limit 30/s for 6 s)" % refused)
    fails.check(0 < refused < n * 0.4,
                "herald should back off: %d refusals for %d messages" % (refused, n))
    fails.check("event=reputation_backoff" in herald.read_stderr(),
                "the reputation factor should have been lowered")
    a = sorted(ms for ms, _ in h.sink_record(rec))
    per_s = collections.Counter((ms - a[0]) // 1000 for ms in a)
    after = [c for s, c in per_s.items() if (a[0] / 1000 + s) > start + 7]
    fails.check(after and max(after) > 30,
                "after the limit is lifted the rate should recover above 30/s: %s"
                % sorted(per_s.items()))


def run():
    fails = h.Failures()
    phase_rate(fails)
    phase_recipient_cap(fails)
    phase_backoff(fails)
    fails.raise_if_any("throttling")


if __name__ == "__main__":
    h.main(run)
