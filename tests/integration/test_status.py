"""`herald status` against a running engine, and reputation kept across a
restart:
  1. a reputation record left in Redis by an earlier run (factor 0.5 for
     127.0.0.1 x p, a suspension for 127.0.0.2 x p) is restored at start:
     status shows the factor, the halved effective limit and the
     suspension, and the sink sees no mail from the suspended IP meanwhile;
  2. status --json accounts for every job (unread + retry + in flight +
     done = enqueued), per tenant, and shows each pair's limit and rate;
  3. the text form prints both tables;
  4. the engine persists the pairs' reputation back to Redis.
"""

import json
import time

import harness as h


def run():
    fails = h.Failures()
    rec = h.tmpdir().join("status.record")
    sink = h.start_sink(["--record", rec])
    redis = h.start_redis()
    cfg = h.base_config(redis, sink.port)
    cfg["egress"] = {"default": ["127.0.0.1", "127.0.0.2"]}
    cfg["providers"] = {"p": {"mx": ["127.0.0.1"], "rate": "600/m", "connections": 4},
                        "default": {"connections": 4}}
    path = h.write_config(cfg, "status.yaml")
    r = redis.client
    now = int(time.time() * 1000)
    suspend_until = now + int(h.scaled(6) * 1000)
    r.hset("herald:reputation", mapping={
        "127.0.0.1|p": "500000 0 %d" % now,
        "127.0.0.2|p": "1000000 %d %d" % (suspend_until, now)})
    n_acme, n_beta = 200, 50
    jobs = [{"id": "a%d" % i, "tenant": "acme", "to": "pat%d@clinic.test" % i,
             "subject": "Reminder", "text": "9:00"} for i in range(n_acme)]
    jobs += [{"id": "b%d" % i, "tenant": "beta", "to": "kim%d@clinic.test" % i,
              "subject": "Reminder", "text": "9:00"} for i in range(n_beta)]
    h.xadd_jobs(redis, jobs)
    herald = h.run_herald(path)
    time.sleep(h.scaled(3))

    out = h.herald_cli(["status", "-c", path, "--json"])
    fails.check(out.returncode == 0, "status --json exit %d: %s" % (out.returncode, out.stderr))
    doc = json.loads(out.stdout)
    procs = doc.get("processes", [])
    fails.check(len(procs) == 1, "one process should be listed: %s" % procs)
    pairs = {(p["ip"], p["provider"]): p for p in procs[0]["pairs"]} if procs else {}
    p1, p2 = pairs.get(("127.0.0.1", "p")), pairs.get(("127.0.0.2", "p"))
    fails.check(p1 is not None and p2 is not None, "both pairs for provider p: %s" % list(pairs))
    if p1 and p2:
        fails.check(abs(p1["limit_per_min"] - 600) < 1, "limit 600/m: %s" % p1)
        # Restored at 0.5, then a clean interval or two may add 0.05 each.
        fails.check(0.5 <= p1["factor"] <= 0.7, "restored factor 0.5: %s" % p1)
        fails.check(abs(p1["effective_per_min"] - 600 * p1["factor"]) < 1,
                    "effective = limit x factor: %s" % p1)
        fails.check(150 <= p1["rate_per_min"] <= 1.2 * p1["effective_per_min"],
                    "127.0.0.1 should be sending near its effective limit: %s" % p1)
        fails.check(p1["open_connections"] <= p1["connections_limit"],
                    "connections within the limit: %s" % p1)
        fails.check(p2["suspended_until"] == suspend_until, "suspension restored: %s" % p2)
    tenants = doc.get("tenants", {})
    for name, n in (("acme", n_acme), ("beta", n_beta)):
        t = tenants.get(name, {})
        done = sum(t.get(k, 0) for k in ("delivered", "bounced", "rejected", "expired",
                                         "suppressed", "duplicate", "cancelled"))
        total = t.get("queued", 0) + t.get("waiting_retry", 0) + t.get("in_flight", 0) + done
        fails.check(abs(total - n) <= max(3, n // 20),
                    "tenant %s: queued+retry+in flight+done = %d, enqueued %d: %s"
                    % (name, total, n, t))
    q = doc.get("queue", {})
    fails.check(q.get("stream", -1) >= 0 and q.get("retry", -1) >= 0, "queue gauges: %s" % q)

    text = h.herald_cli(["status", "-c", path])
    fails.check(text.returncode == 0 and "127.0.0.2" in text.stdout and "acme" in text.stdout
                and "suspended until" in text.stdout,
                "text status should list the pairs and tenants:\n%s" % text.stdout)
    h.log("status:\n" + text.stdout)

    h.wait_notes(redis, n_acme + n_beta, timeout=h.scaled(90), herald=herald)
    time.sleep(h.scaled(6))  # one persistence round after the last change
    saved = r.hget("herald:reputation", "127.0.0.1|p")
    herald.stop()
    sink.stop()
    fails.check(saved is not None and len(saved.split()) == 3,
                "reputation persisted for 127.0.0.1|p: %r" % saved)
    early_from_2 = 0
    with open(rec) as f:
        for line in f:
            ms, ip = line.split()[:2]
            if ip == "127.0.0.2" and int(ms) < suspend_until - 200:
                early_from_2 += 1
    fails.check(early_from_2 == 0,
                "%d messages left 127.0.0.2 while it was suspended" % early_from_2)
    fails.raise_if_any("herald status")


if __name__ == "__main__":
    h.main(run)
