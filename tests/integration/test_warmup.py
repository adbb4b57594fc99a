"""Warm-up of a new egress IP (measured at the sink by client IP):
  1. 127.0.0.2 on day 1 of its schedule (cap 5/day) sends exactly 5 of 40
     jobs while 127.0.0.1 (not warming up) takes the rest; `herald status`
     shows the day, the cap and what was sent;
  2. the day's count survives a restart (kept in Redis): with only the
     warming IP in the pool, nothing more leaves it today; the jobs wait
     without using an attempt and end `expired` at their expires_at.
"""

import collections
import json
import time

import harness as h


def from_ips(rec):
    return collections.Counter(ip for _, ip in h.sink_record(rec))


def run():
    fails = h.Failures()
    rec = h.tmpdir().join("warm.record")
    sink = h.start_sink(["--record", rec])
    redis = h.start_redis()
    today = time.strftime("%Y-%m-%d", time.gmtime())
    cfg = h.base_config(redis, sink.port)
    cfg["egress"] = {"default": ["127.0.0.1", "127.0.0.2"]}
    cfg["warmup"] = {"127.0.0.2": {"start": today, "schedule": [5, 20, 50]}}
    path = h.write_config(cfg, "warm1.yaml")
    n = 40
    h.xadd_jobs(redis, [{"id": "w%d" % i, "tenant": "acme", "to": "p%d@clinic.test" % i,
                         "subject": "Reminder", "text": "9:00"} for i in range(n)])
    herald = h.run_herald(path)
    h.wait_notes(redis, n, timeout=h.scaled(30), herald=herald)
    time.sleep(h.scaled(1.5))
    st = json.loads(h.herald_cli(["status", "-c", path, "--json"]).stdout)
    warm = st["processes"][0]["warmup"] if st.get("processes") else []
    fails.check(warm and warm[0]["ip"] == "127.0.0.2" and warm[0]["day"] == 1
                and warm[0]["cap_today"] == 5 and warm[0]["sent_today"] == 5,
                "status should show day 1, cap 5, sent 5: %s" % warm)
    time.sleep(h.scaled(5.5))  # one persistence round
    herald.stop()
    got = from_ips(rec)
    h.log("messages by egress IP: %s" % dict(got))
    fails.check(got.get("127.0.0.2") == 5, "the warming IP should send exactly 5: %s" % dict(got))
    fails.check(got.get("127.0.0.1") == n - 5, "the other IP takes the rest: %s" % dict(got))
    notes = h.read_notes(redis)
    fails.check(sum(1 for x in notes if x.get("event") == "delivered") == n,
                "all %d delivered" % n)

    # 2. restart with only the warming IP: its cap is used up today.
    cfg["egress"] = {"default": ["127.0.0.2"]}
    path2 = h.write_config(cfg, "warm2.yaml")
    exp = str(int(time.time() * 1000) + int(h.scaled(4) * 1000))
    more = [{"id": "x%d" % i, "tenant": "acme", "to": "q%d@clinic.test" % i,
             "subject": "Reminder", "text": "9:00", "expires_at": exp} for i in range(3)]
    h.xadd_jobs(redis, more)
    herald = h.run_herald(path2)
    h.wait_terminal(redis, [j["id"] for j in more], timeout=h.scaled(30), herald=herald)
    herald.stop()
    sink.stop()
    by = h.notes_by_job(h.read_notes(redis))
    ends = [next((x["event"] for x in by[j["id"]] if h.is_terminal(x)), "?") for j in more]
    fails.check(ends == ["expired"] * 3, "jobs over the warm-up cap should wait, then expire: %s"
                % ends)
    attempts = [x.get("attempt") for j in more for x in by[j["id"]]]
    fails.check(all(a in ("0", "1", None) for a in attempts),
                "waiting for warm-up must not use attempts: %s" % attempts)
    fails.check(from_ips(rec).get("127.0.0.2") == 5,
                "nothing more from the warming IP today: %s" % dict(from_ips(rec)))
    fails.check("event=warmup_restored ip=127.0.0.2 sent_today=5" in herald.read_stderr(),
                "the day's count should be restored from Redis")
    bad = h.write_config(dict(cfg, warmup={"127.0.0.9": {"start": today, "schedule": [5]}}),
                         "warm-bad.yaml")
    cc = h.herald_cli(["check-config", "-c", bad])
    fails.check(cc.returncode == 2 and "not in any egress pool" in cc.stderr,
                "a warm-up IP outside the pools is a config error: %d %s"
                % (cc.returncode, cc.stderr))
    fails.raise_if_any("warm-up")


if __name__ == "__main__":
    h.main(run)
