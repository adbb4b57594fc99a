"""A `suspend` reputation rule: the receiver answers above its hidden limit
with a wording the config maps to `suspend 3s`. herald stops sending to that
provider from that IP for the duration (nothing reaches the sink in the
window after the first such reply, apart from messages already on the
wire), parks the waiting jobs without using an attempt (deferred notes with
category rate-limit and next_attempt_at at the end of the suspension), and
delivers everything once the window has passed."""

import time

import harness as h

TEXT = "421 4.7.0 Temporarily deferred due to unexpected volume"


def run():
    fails = h.Failures()
    rec = h.tmpdir().join("suspend.record")
    # 20 msg/s allowed for the first 4 s of the run, then refusals stop.
    sink = h.start_sink(["--record", rec, "--limit-rate", "20", "--limit-for", "4000",
                         "--limit-text", TEXT])
    redis = h.start_redis()
    cfg = h.base_config(redis, sink.port)
    cfg["providers"] = {"p": {"mx": ["127.0.0.1"], "rate": "100/s", "connections": 2},
                        "default": {"connections": 2}}
    cfg["delivery"] = {"retry": ["1s"], "max_age": "1h", "timeouts": {"idle": "2s"}}
    cfg["reputation"] = {"rules": [{"match": "unexpected volume", "action": "suspend 3s"}]}
    path = h.write_config(cfg, "suspend.yaml")
    n = 150
    h.xadd_jobs(redis, [{"id": "s%d" % i, "tenant": "acme", "to": "p%d@clinic.test" % i,
                         "subject": "Reminder", "text": "9:00"} for i in range(n)])
    herald = h.run_herald(path)
    h.wait_terminal(redis, ["s%d" % i for i in range(n)], timeout=h.scaled(60), herald=herald)
    log = herald.read_stderr()
    herald.stop()
    sink.stop()

    notes = h.read_notes(redis)
    ends = [x for x in notes if h.is_terminal(x)]
    fails.check(len(ends) == n and all(x["event"] == "delivered" for x in ends),
                "all %d should end delivered: %s" % (n, {x["event"] for x in ends}))
    parked = [x for x in notes if x.get("event") == "deferred" and "suspended" in x.get("reason", "")]
    fails.check(parked, "waiting jobs should get a deferred note saying the provider is suspended")
    fails.check(all(x.get("category") == "rate-limit" and x.get("next_attempt_at", "").isdigit()
                    for x in parked), "suspension notes need category and next_attempt_at")
    fails.check("event=reputation_suspend" in log or "suspend" in log,
                "the suspension should be logged")
    refused = [x for x in notes if x.get("event") == "deferred" and "unexpected volume" in
               x.get("reply", "")]
    fails.check(refused, "the sink's refusal should appear on a note")
    if refused:
        first = min(int(x["at"]) for x in refused)
        arrivals = sorted(int(line.split()[0]) for line in open(rec) if line.strip())
        # Messages already in a transaction may still land in the first
        # moments; after 500 ms nothing may arrive until the 3 s are over.
        during = [t for t in arrivals if first + 500 <= t < first + 2800]
        after = [t for t in arrivals if t >= first + 3000]
        h.log("first refusal at +%d ms; %d arrivals in the suspended window, %d after"
              % (first - arrivals[0], len(during), len(after)))
        fails.check(not during, "%d messages arrived while the provider was suspended"
                    % len(during))
        fails.check(after, "sending must resume after the suspension")
    # A job that only waited out the suspension (never refused itself) is
    # delivered on its first attempt.
    refused_jobs = {x["job"] for x in refused}
    waited = {x["job"] for x in parked} - refused_jobs
    attempts = {x["job"]: x.get("attempt") for x in ends if x["job"] in waited}
    fails.check(waited and all(a == "1" for a in attempts.values()),
                "waiting out a suspension must not use attempts: %s"
                % sorted(set(attempts.values())))
    fails.raise_if_any("suspend rule")


if __name__ == "__main__":
    h.main(run)
