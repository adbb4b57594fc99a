"""Admission of a whole read batch in one script call.

One worker, every job in the stream before herald starts, so its first
read takes them all and admits them with one EVALSHA (Redis's slowlog,
set to record every command, shows its numkeys: 10 per job). In that
one call: a job and its duplicate (the second sees the first's claim),
a globally suppressed recipient, a job whose tenant's suppression key is
of the wrong type (its admission fails alone, WRONGTYPE caught per job:
it stays pending, is claimed again once the key is fixed and delivered),
and plain jobs. Checked: every job ends with exactly one terminal note of
the expected event, the receiver got each delivered job once, the failed
job was logged admit_failed, and the batch call held every job."""

import time

import harness as h

PLAIN = ["plain-%02d" % i for i in range(10)]


def job(job_id, to, tenant="acme"):
    return {"id": job_id, "tenant": tenant, "to": to, "subject": "Reminder",
            "text": "Tomorrow at 9:00"}


def admission_calls(redis):
    """numkeys / 10 of every admission call in the slowlog (the admission
    script is the only one called with a multiple of 10 keys)."""
    out = []
    for e in redis.client.slowlog_get(100000):
        cmd = e.get("command")
        cmd = cmd.decode("utf-8", "replace") if isinstance(cmd, bytes) else str(cmd)
        parts = cmd.split(" ")
        if len(parts) > 2 and parts[0].upper() == "EVALSHA" and parts[2].isdigit():
            k = int(parts[2])
            if k >= 10 and k % 10 == 0:
                out.append(k // 10)
    return out


def run():
    fails = h.Failures()
    smtp = h.start_aiosmtpd()
    redis = h.start_redis()
    cfg = h.write_config(h.base_config(redis, smtp.port, engine={"workers": 1}))
    redis.client.config_set("slowlog-log-slower-than", 0)
    redis.client.config_set("slowlog-max-len", 100000)
    redis.client.sadd("herald:suppress", "blocked@example.test")
    # Not a set: SISMEMBER on it fails inside the script, for beta's job only.
    redis.client.set("herald:suppress:beta", "not-a-set")

    jobs = ([job("dup-1", "pat@clinic.test"), job("dup-1", "pat@clinic.test"),
             job("blocked-1", "blocked@example.test"), job("wrongtype-1", "kim@clinic.test",
                                                            tenant="beta")] +
            [job(j, "%s@clinic.test" % j) for j in PLAIN])
    h.enqueue(cfg, jobs)
    redis.client.slowlog_reset()
    herald = h.run_herald(cfg)
    # Everything but the wrong-type job ends at once.
    h.wait_notes(redis, len(jobs) - 1, timeout=h.scaled(30), herald=herald)
    calls = admission_calls(redis)
    fails.check(calls and calls[0] == len(jobs),
                "the first admission call should hold all %d jobs: calls %s" % (len(jobs), calls))
    fails.check(sum(calls) == len(jobs),
                "one admission per job so far, in %s" % calls)
    redis.client.delete("herald:suppress:beta")
    h.wait_terminal(redis, ["wrongtype-1"], timeout=h.scaled(30), herald=herald)
    time.sleep(h.scaled(3))  # a second note would need claim_idle (2 s) and a delivery
    herald.stop()

    notes = h.read_notes(redis)
    terminal = sorted((n.get("job"), n.get("event")) for n in notes if h.is_terminal(n))
    want = sorted([("dup-1", "delivered"), ("dup-1", "duplicate"), ("blocked-1", "suppressed"),
                   ("wrongtype-1", "delivered")] + [(j, "delivered") for j in PLAIN])
    fails.check(terminal == want, "terminal notes:\n  got  %s\n  want %s" % (terminal, want))
    got = {}
    for m in smtp.messages():
        for r in m["rcpt_tos"]:
            got[r] = got.get(r, 0) + 1
    want_rcpt = {"pat@clinic.test": 1, "kim@clinic.test": 1}
    want_rcpt.update({"%s@clinic.test" % j: 1 for j in PLAIN})
    fails.check(got == want_rcpt, "receiver got %s" % sorted(got.items()))
    err = herald.read_stderr()
    failed = [l for l in err.splitlines() if "event=admit_failed" in l]
    fails.check(failed and all("wrongtype-1" in l for l in failed) and "WRONGTYPE" in failed[0],
                "admit_failed should name only the wrong-type job: %s" % failed[:3])
    fails.raise_if_any("admission batch")


if __name__ == "__main__":
    h.main(run)
