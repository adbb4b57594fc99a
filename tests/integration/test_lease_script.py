"""The shared-limits script (scripts.c: notes_script_lease), driven with a
fake clock through EVALSHA of the sha herald loaded (seen on MONITOR while
herald sends on a rated path):
  1. the GCRA grants slots in blocks up to the burst, then says how long to
     wait, exactly;
  2. connection grants: an equal share among the live processes, never more
     than the limit less what the others hold (including what they still
     have open), and a dead process's hold expires;
  3. reputation: the lowest live factor is the path's.
"""

import time

import harness as h
from test_rcap import Monitor


class Lease:
    def __init__(self, redis, sha):
        self.c = redis.client
        self.sha = sha
        self.keys = ["t:gcra", "t:conns", "t:rep"]

    def call(self, now_ms, T_us=100000, tau_us=900000, want=0, me="a", limit=0, ttl=5000,
             open_now=0, factor=0):
        r = self.c.evalsha(self.sha, 3, *self.keys, now_ms, T_us, tau_us, want, me, limit, ttl,
                           open_now, factor)
        return [int(x) for x in r]


def find_sha(redis):
    mon = Monitor(redis.port)
    sink = h.start_sink()
    cfg = h.base_config(redis, sink.port)
    cfg["providers"] = {"p": {"mx": ["127.0.0.1"], "rate": "10/s", "connections": 2},
                        "default": {"connections": 2}}
    herald = h.run_herald(h.write_config(cfg, "lease.yaml"))
    h.xadd_jobs(redis, [{"id": "j%d" % i, "tenant": "acme", "to": "p%d@clinic.test" % i,
                         "subject": "S", "text": "t"} for i in range(3)])
    h.wait_notes(redis, 3, timeout=h.scaled(20), herald=herald)
    herald.stop()
    sink.stop()
    time.sleep(0.2)
    cmds = mon.commands()
    mon.close()
    return next((a[1] for kind, a in cmds if len(a) > 2 and a[0].upper() == "EVALSHA"
                 and a[2] == "3"), None)


def run():
    fails = h.Failures()
    redis = h.start_redis()
    sha = find_sha(redis)
    if not fails.check(sha is not None, "no lease EVALSHA seen on MONITOR"):
        fails.raise_if_any("lease script")
    s = Lease(redis, sha)
    now = 1_000_000

    # 1. GCRA at 10/s with a burst of 10 (tau 0.9 s).
    fails.check(s.call(now, want=5)[:2] == [5, 0], "5 of the burst at once")
    fails.check(s.call(now, want=10)[:2] == [5, 0], "the other 5, and no more")
    g, wait = s.call(now, want=10)[:2]
    fails.check(g == 0 and wait == 100, "then wait one interval: got %d, wait %d" % (g, wait))
    fails.check(s.call(now + 100, want=10)[:2] == [1, 0], "one slot per interval after the burst")
    fails.check(s.call(now + 100, want=1)[:2] == [0, 100], "and the next one interval later")

    # 2. Connections, limit 2.
    fails.check(s.call(now, me="a", limit=2)[2] == 2, "alone: the whole limit")
    fails.check(s.call(now, me="b", limit=2)[2] == 0, "b: nothing while a holds both")
    fails.check(s.call(now + 10, me="a", limit=2, open_now=2)[2] == 1,
                "a's share shrinks to 1 once b is live")
    fails.check(s.call(now + 20, me="b", limit=2)[2] == 0,
                "b still waits: a has 2 open, whatever its grant")
    fails.check(s.call(now + 30, me="a", limit=2, open_now=1)[2] == 1, "a closed one")
    fails.check(s.call(now + 40, me="b", limit=2)[2] == 1, "now b gets its share")
    fails.check(s.call(now + 20000, me="b", limit=2)[2] == 2,
                "a stopped renewing: its hold expires and b may take the limit")

    # 3. Reputation: the lowest live factor.
    fails.check(s.call(now, me="a", factor=500000)[3] == 500000, "a alone")
    fails.check(s.call(now + 1, me="b", factor=800000)[3] == 500000, "b follows a down")
    fails.check(s.call(now + 2, me="a", factor=900000)[3] == 800000,
                "a climbed: the lowest live is b's")
    fails.check(s.call(now + 20000, me="b", factor=800000)[3] == 800000,
                "a's expired factor no longer counts")
    fails.raise_if_any("lease script")


if __name__ == "__main__":
    h.main(run)
