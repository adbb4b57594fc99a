"""One hostile recipient domain cannot throttle anyone else's mail.

Three domains that no provider names, each with its own MX:
  closed.test  its exchanger refuses every connection (nothing listens);
  tarpit.test  its exchanger greets one byte a second;
  quote.test   its exchanger answers 421 quoting a `suspend` rule's text.
Their jobs go first and retry every second; then 20 jobs go to good.test.

Checked:
  1. all 20 to good.test are delivered, and good.test's path keeps its
     full reputation factor, unsuspended (signals from one site shape only
     that site);
  2. closed.test and tarpit.test, sites with no history of accepting mail
     from us, feed no reputation signals at all: refusals and silent
     exchangers are not reputation verdicts (before this, every refused
     connection counted as a back-off signal on the site's path);
  3. quote.test's suspension is its own: only its site's path is suspended.
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
    h.start_aiosmtpd(host="127.0.0.4", port=port)
    h.start_hostile_mx("slowbanner", port, "127.0.0.5")  # the tarpit
    h.start_hostile_mx("suspendtext", port, "127.0.0.7")
    zone = DnsZone([
        "mx-host=closed.test,mx.closed.test,10",
        "host-record=mx.closed.test,127.0.0.6",  # nothing listens there
        "mx-host=tarpit.test,mx.tarpit.test,10",
        "host-record=mx.tarpit.test,127.0.0.5",
        "mx-host=quote.test,mx.quote.test,10",
        "host-record=mx.quote.test,127.0.0.7",
        "mx-host=good.test,mx.good.test,10",
        "host-record=mx.good.test,127.0.0.4",
    ])
    redis = h.start_redis()
    cfg = h.base_config(redis, 9)
    del cfg["routes"]
    cfg["dns"] = {"servers": [zone.server]}
    cfg["providers"] = {"default": {"connections": 2}}
    cfg["reputation"] = {"rules": [{"match": "unexpected volume", "action": "suspend 1h"}]}
    cfg["engine"]["shutdown_grace"] = "2s"
    cfg["delivery"] = {"port": port, "retry": ["1s"], "max_age": "2d",
                       "timeouts": {"connect": "2s", "banner": "3s", "idle": "2s"}}
    path = h.write_config(cfg)
    herald = h.run_herald(path)
    hostile = ([job("c%d" % i, "pat%d@closed.test" % i) for i in range(10)] +
               [job("t%d" % i, "sam%d@tarpit.test" % i) for i in range(10)] +
               [job("q%d" % i, "lee%d@quote.test" % i) for i in range(10)])
    h.xadd_jobs(redis, hostile)
    time.sleep(h.scaled(5))  # several rounds of refusals, timeouts and 421s
    good = ["g%d" % i for i in range(20)]
    h.xadd_jobs(redis, [job(g, "kim%s@good.test" % g) for g in good])
    h.wait_terminal(redis, good, timeout=h.scaled(20), herald=herald)
    notes = h.notes_by_job(h.read_notes(redis))
    delivered = [g for g in good if notes.get(g) and notes[g][-1].get("event") == "delivered"]
    h.log("good.test: %d of 20 delivered next to three hostile sites" % len(delivered))
    fails.check(len(delivered) == 20, "good.test delivered %d of 20" % len(delivered))
    attempted = [j["id"] for j in hostile if notes.get(j["id"])]
    fails.check(len(attempted) >= 10, "the hostile domains' jobs should have been tried: %d noted"
                % len(attempted))

    time.sleep(h.scaled(2))  # the status document is published once a second
    st = h.herald_cli(["status", "-c", path, "--json"])
    fails.check(st.returncode == 0, "herald status: %s" % st.stderr)
    doc = json.loads(st.stdout or "{}")
    pairs = [p for proc in doc.get("processes", []) for p in proc.get("pairs", [])
             if p.get("provider") == "default"]
    by_site = {}
    for p in pairs:
        by_site.setdefault(p.get("site", ""), []).append(p)
    for site, ps in sorted(by_site.items()):
        for p in ps:
            h.log("site=%s factor=%.3f signals=%d suspended_until=%d sent=%d" % (
                site or "-", p.get("factor", 0), p.get("throttle_signals", 0),
                p.get("suspended_until", 0), p.get("sent", 0)))
    for p in by_site.get("mx.good.test", []):
        fails.check(p.get("factor", 0) >= 0.999 and not p.get("suspended_until"),
                    "good.test's path was shaped by another site: %s" % p)
    fails.check(by_site.get("mx.good.test"), "status should show good.test's site: %s" % by_site.keys())
    for site in ("mx.closed.test", "mx.tarpit.test"):
        for p in by_site.get(site, []):
            fails.check(p.get("throttle_signals", 0) == 0 and p.get("factor", 0) >= 0.999,
                        "%s has no history: its failures are not reputation signals: %s" % (site, p))
    quoted = by_site.get("mx.quote.test", [])
    fails.check(quoted and all(p.get("suspended_until", 0) > 0 for p in quoted),
                "quote.test's own path should be suspended: %s" % quoted)
    others = [p for s, ps in by_site.items() if s != "mx.quote.test" for p in ps
              if p.get("suspended_until", 0) > 0]
    fails.check(not others, "a suspension must stay on its own site: %s" % others)
    herald.stop()
    fails.raise_if_any("hostile site")


if __name__ == "__main__":
    h.main(run)
