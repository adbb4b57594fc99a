"""Two processes sending from one warming IP share its day's count
(Redis, flushed every second): with a cap of 20 for the day and each
process held to 4/s on the path, the two together send about 20 from the
IP, not 20 each; the rest goes from the other address of the pool."""

import collections
import time

import harness as h


def run():
    fails = h.Failures()
    rec = h.tmpdir().join("sw.record")
    sink = h.start_sink(["--record", rec])
    redis = h.start_redis()
    today = time.strftime("%Y-%m-%d", time.gmtime())
    n = 120
    h.xadd_jobs(redis, [{"id": "w%d" % i, "tenant": "acme", "to": "p%d@clinic.test" % i,
                         "subject": "Reminder", "text": "9:00"} for i in range(n)])
    cfg = h.base_config(redis, sink.port)
    cfg["engine"]["workers"] = 1
    cfg["egress"] = {"default": ["127.0.0.1", "127.0.0.2"]}
    cfg["warmup"] = {"127.0.0.2": {"start": today, "schedule": [20, 100]}}
    cfg["providers"] = {"p": {"mx": ["127.0.0.1"], "rate": "8/s", "connections": 4},
                        "default": {"connections": 4}}
    procs = [p for p, _ in h.run_nodes(cfg, 2, name="sw")]
    h.wait_notes(redis, n, timeout=h.scaled(90), herald=procs[0])
    for p in procs:
        p.check()
        p.stop()
    sink.stop()
    by_ip = collections.Counter(ip for _, ip in h.sink_record(rec))
    h.log("messages by egress IP across both processes: %s" % dict(by_ip))
    fails.check(sum(by_ip.values()) == n, "all %d delivered: %s" % (n, dict(by_ip)))
    warm = by_ip.get("127.0.0.2", 0)
    # Each process alone would send 20 from it (40 together); shared, the
    # two stop at 20 plus at most about a second of each one's sending.
    fails.check(20 <= warm <= 28, "the warming IP's day cap is shared: %d sent from it" % warm)
    fails.raise_if_any("warm-up shared by two processes")


if __name__ == "__main__":
    h.main(run)
