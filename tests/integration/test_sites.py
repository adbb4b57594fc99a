"""Per-site queues: the default provider's limits apply per egress IP x
destination site (the set of exchangers a domain's MX names), so a stuck
site never holds up another.

Measured before sites existed: every domain no provider names shared one
group per IP, so one exchanger that greets one byte a second held the
default provider's connections, and 0 of 20 jobs to another small domain
were delivered in 15 s. Here:
  1. stuck.test's exchanger greets one byte a second; 20 jobs to it go
     first, then 20 to other.test (its own MX): all 20 of other.test are
     delivered within a few seconds, while stuck.test's still hang;
  2. two domains hosted on the same exchanger (shared1.test, shared2.test)
     are one site: `herald status` shows one pair for them, a separate one
     for other.test, each labelled with its exchanger.
"""

import json
import time

import harness as h
from dnszone import DnsZone


def job(job_id, to):
    return {"id": job_id, "tenant": "acme", "to": to, "subject": "Reminder", "text": "9:00"}


def run():
    fails = h.Failures()
    port = h.free_port()
    ok = h.start_aiosmtpd(host="127.0.0.4", port=port)
    h.start_hostile_mx("slowbanner", port, "127.0.0.5")
    zone = DnsZone([
        "mx-host=stuck.test,mx.stuck.test,10",
        "host-record=mx.stuck.test,127.0.0.5",
        "mx-host=other.test,mx.other.test,10",
        "host-record=mx.other.test,127.0.0.4",
        "mx-host=shared1.test,mx.hoster.test,10",
        "mx-host=shared2.test,mx.hoster.test,10",
        "host-record=mx.hoster.test,127.0.0.4",
    ])
    redis = h.start_redis()
    cfg = h.base_config(redis, 9)
    del cfg["routes"]
    cfg["dns"] = {"servers": [zone.server]}
    cfg["providers"] = {"default": {"connections": 2}}
    cfg["engine"]["shutdown_grace"] = "2s"
    cfg["delivery"] = {"port": port, "retry": ["1h"], "max_age": "2d",
                       "timeouts": {"connect": "5s", "banner": "60s", "idle": "2s"}}
    path = h.write_config(cfg)
    herald = h.run_herald(path)
    h.xadd_jobs(redis, [job("s%d" % i, "pat%d@stuck.test" % i) for i in range(20)])
    time.sleep(1)  # the stuck site has taken its connections by now
    h.xadd_jobs(redis, [job("o%d" % i, "kim%d@other.test" % i) for i in range(20)])
    h.xadd_jobs(redis, [job("a%d" % i, "ann%d@shared%d.test" % (i, 1 + i % 2)) for i in range(4)])
    t0 = time.monotonic()
    got = h.wait_terminal(redis, ["o%d" % i for i in range(20)] + ["a%d" % i for i in range(4)],
                          timeout=h.scaled(15), herald=herald)
    took = time.monotonic() - t0
    notes = h.notes_by_job(h.read_notes(redis))
    delivered = [j for j in ["o%d" % i for i in range(20)]
                 if notes.get(j) and notes[j][-1].get("event") == "delivered"]
    h.log("other.test: %d of 20 delivered in %.1f s behind a stuck site" % (len(delivered), took))
    fails.check(len(delivered) == 20,
                "a stuck site must not hold up another: %d of 20 to other.test delivered" % len(delivered))
    stuck_done = [j for j in ["s%d" % i for i in range(20)] if notes.get(j)]
    fails.check(len(stuck_done) == 0,
                "stuck.test's jobs are still hanging on its greeting: %s" % stuck_done[:3])

    time.sleep(h.scaled(2))  # the status document is published once a second
    st = h.herald_cli(["status", "-c", path, "--json"])
    fails.check(st.returncode == 0, "herald status: %s" % st.stderr)
    doc = json.loads(st.stdout or "{}")
    pairs = [p for proc in doc.get("processes", []) for p in proc.get("pairs", [])]
    sites = sorted(p.get("site", "") for p in pairs if p.get("provider") == "default" and p.get("site"))
    h.log("default provider's sites in status: %s" % sites)
    fails.check("mx.hoster.test" in sites and "mx.other.test" in sites and "mx.stuck.test" in sites,
                "status should show a pair per site: %s" % sites)
    fails.check(sites.count("mx.hoster.test") == 1,
                "two domains on one exchanger are one site: %s" % sites)
    herald.stop()
    fails.raise_if_any("per-site queues")


if __name__ == "__main__":
    h.main(run)
