"""Three herald processes in one consumer group share the limits that live
in Redis: a per-recipient cap (2/h: of 12 jobs to one address, exactly 2
are delivered across all three) and a tenant rate (30/s for the tenant,
measured at the sink across the processes, within 15%), while another
tenant with no cap is not held back by it."""

import collections
import time

import harness as h


def run():
    fails = h.Failures()
    rec = h.tmpdir().join("multi.record")
    sink = h.start_sink(["--record", rec])
    redis = h.start_redis()
    n_capped, n_rated, n_free = 12, 300, 100
    exp = str(int(time.time() * 1000) + int(h.scaled(6) * 1000))
    jobs = [{"id": "cap%d" % i, "tenant": "acme", "to": "Same.Patient@clinic.test",
             "subject": "Reminder", "text": "9:00", "expires_at": exp} for i in range(n_capped)]
    jobs += [{"id": "r%d" % i, "tenant": "beta", "to": "p%d@clinic.test" % i,
              "subject": "Reminder", "text": "9:00"} for i in range(n_rated)]
    jobs += [{"id": "f%d" % i, "tenant": "acme", "to": "f%d@clinic.test" % i,
              "subject": "Reminder", "text": "9:00"} for i in range(n_free)]
    h.xadd_jobs(redis, jobs)
    procs = []
    for k in range(3):
        cfg = h.base_config(redis, sink.port, recipients={"limit": ["2/h"]})
        cfg["engine"]["consumer"] = "node%d" % k
        cfg["engine"]["workers"] = 1
        cfg["tenants"]["beta"]["rate"] = "30/s"
        procs.append(h.run_herald(h.write_config(cfg, "node%d.yaml" % k)))
    h.wait_terminal(redis, [j["id"] for j in jobs], timeout=h.scaled(60), herald=procs[0])
    for p in procs:
        p.check()
        p.stop()
    sink.stop()

    notes = h.read_notes(redis)
    by = h.notes_by_job(notes)
    ends = collections.Counter(next((n["event"] for n in by[j["id"]] if h.is_terminal(n)), "?")
                               for j in jobs if j["id"].startswith("cap"))
    fails.check(ends.get("delivered") == 2 and ends.get("expired") == n_capped - 2,
                "recipient cap 2/h across 3 processes: %s" % dict(ends))
    # Every process took part: each logs the deliveries it made.
    shares = [h.delivered_by(p) for p in procs]
    h.log("deliveries per process: %s" % shares)
    fails.check(all(s > 0 for s in shares), "every process should deliver some: %s" % shares)
    # The rate is measured on beta's delivered notes (the sink's record has
    # no tenant).
    beta_at = sorted(int(n["at"]) for n in notes
                     if n.get("tenant") == "beta" and n.get("event") == "delivered")
    fails.check(len(beta_at) == n_rated, "all beta jobs delivered: %d" % len(beta_at))
    if len(beta_at) == n_rated:
        t0 = beta_at[0] + 1000  # skip the first second (the allowed burst)
        t1 = beta_at[-1]
        got = sum(1 for t in beta_at if t0 <= t <= t1)
        rate = got * 1000.0 / max(1, t1 - t0)
        h.log("beta delivered at %.1f/s across 3 processes (cap 30/s)" % rate)
        fails.check(25.5 <= rate <= 34.5, "tenant rate across processes: %.1f/s, want 30 +/- 15%%"
                    % rate)
    free_at = sorted(int(n["at"]) for n in notes
                     if n.get("job", "").startswith("f") and n.get("event") == "delivered")
    fails.check(len(free_at) == n_free and beta_at and free_at[-1] < beta_at[-1],
                "the uncapped tenant should finish before the capped one")
    fails.raise_if_any("limits shared by three processes")


if __name__ == "__main__":
    h.main(run)
