"""A reload calls rate-parked jobs back from the retry set in bounded
chunks, not in one script call over the whole set.

Before, one EVAL walked every member of the retry set: with a large set
that call held Redis for as long as it took, and every other client (the
note scripts of every process) got BUSY meanwhile. Here the retry set holds
3,214 rate-parked job hashes (`throttled=1`, due in an hour) and 1,286
others (scheduled, not rate-parked) interleaved with them. After SIGHUP:
  - every rate-parked one is due now (none left behind by the chunking),
    and none of the others moved;
  - the log says parked_recalled parked=3214;
  - Redis's slowlog (threshold 0) shows the walk took one call per 500
    members, not one call for the whole set."""

import os
import signal
import time

import harness as h

TOTAL = 4500  # 5 of every 7 rate-parked: 3,214 of them


def run():
    fails = h.Failures()
    sink = h.start_aiosmtpd()
    redis = h.start_redis()
    c = redis.client
    cfg = h.base_config(redis, sink.port)
    path = h.write_config(cfg)
    herald = h.run_herald(path)
    # Stop the mover from taking them before the reload: due in an hour.
    due = int(time.time() * 1000) + 3600 * 1000
    pipe = c.pipeline(transaction=False)
    members = []
    for i in range(TOTAL):
        key = "herald:job:9-%d" % i
        throttled = i % 7 not in (0, 3)  # 5 of 7 rate-parked
        fields = {"tenant": "acme", "id": "r%d" % i, "to": "r%d@clinic.test" % i,
                  "subject": "s", "text": "t", "attempt": "1"}
        if throttled:
            fields["throttled"] = "1"
        pipe.hset(key, mapping=fields)
        pipe.zadd("herald:retry", {key: due + i})
        members.append((key, throttled))
    pipe.execute()
    n_parked = sum(1 for _, t in members if t)
    c.config_set("slowlog-log-slower-than", "0")
    c.config_set("slowlog-max-len", "100000")
    c.slowlog_reset()
    os.kill(herald.pid, signal.SIGHUP)
    deadline = time.monotonic() + h.scaled(30)
    line = None
    while time.monotonic() < deadline and line is None:
        for l in herald.read_stderr().splitlines():
            if "event=parked_recalled" in l:
                line = l
        time.sleep(0.1)
    fails.check(line is not None and "parked=%d" % n_parked in line,
                "the reload should recall all %d rate-parked jobs: %r" % (n_parked, line))
    # Rate-parked ones are due now (or already moved back by the mover);
    # the others keep their scores.
    now = int(time.time() * 1000)
    left_behind = moved_others = 0
    for key, throttled in members:
        score = c.zscore("herald:retry", key)
        if throttled and score is not None and score > now:
            left_behind += 1
        if not throttled and (score is None or score < due):
            moved_others += 1
    fails.check(left_behind == 0, "%d rate-parked jobs not recalled" % left_behind)
    fails.check(moved_others == 0, "%d jobs that were not rate-parked moved" % moved_others)
    calls = [e for e in c.slowlog_get(100000)
             if isinstance(e.get("command"), bytes) and e["command"].startswith(b"EVAL")
             and b"'(' .. ARGV[1]" in e["command"]]
    h.log("recall calls: %d, longest %d us" % (len(calls), max([e["duration"] for e in calls]
                                                              or [0])))
    fails.check(len(calls) >= TOTAL // 500,
                "the walk should take at least %d calls of at most 500 members, took %d"
                % (TOTAL // 500, len(calls)))
    herald.stop()
    fails.raise_if_any("chunked recall")


if __name__ == "__main__":
    h.main(run)
