"""MX routing against a real DNS server (dnsmasq) and real SMTP servers on
loopback addresses: preference order with failover from a dead primary to
the secondary, random choice among equal preferences, implicit MX (no MX
records: the domain's A record), null MX (bounced 5.1.10), NXDOMAIN
(bounced 5.1.2), a 421 greeting (next MX), a failing DNS server
(deferred), answers cached by TTL (a second wave of jobs asks dnsmasq
nothing new), and `herald smtp-test` walking the same MX list."""

import os
import sys
import time

import harness as h
from dnszone import DnsZone


def job(job_id, to):
    return {"id": job_id, "tenant": "acme", "to": to, "subject": "Reminder", "text": "9:00"}


def run():
    port = h.free_port()
    live3 = h.start_aiosmtpd(host="127.0.0.3", port=port)
    live4 = h.start_aiosmtpd(host="127.0.0.4", port=port)
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hostile_smtp.py")
    busy = h.Proc("busy-mx", [sys.executable, script, "busy", str(port), "127.0.0.5"])
    if not h.wait_port(port, h.scaled(10), busy, host="127.0.0.5"):
        raise h.TestFailure("busy MX did not start")
    dead_upstream = h.free_port()
    zone = DnsZone([
        "mx-host=dead.test,mx-dead.dead.test,10",
        "mx-host=dead.test,mx-live.dead.test,20",
        "host-record=mx-dead.dead.test,127.0.0.2",
        "host-record=mx-live.dead.test,127.0.0.3",
        "mx-host=eq.test,a.eq.test,10",
        "mx-host=eq.test,b.eq.test,10",
        "host-record=a.eq.test,127.0.0.3",
        "host-record=b.eq.test,127.0.0.4",
        "host-record=implicit.test,127.0.0.4",
        "dns-rr=nullmx.test,15,000000",
        "mx-host=busy.test,mx-busy.busy.test,10",
        "mx-host=busy.test,mx-ok.busy.test,20",
        "host-record=mx-busy.busy.test,127.0.0.5",
        "host-record=mx-ok.busy.test,127.0.0.4",
    ], forward=[("fail.example", "127.0.0.1#%d" % dead_upstream)])
    redis = h.start_redis()
    cfg = h.base_config(redis, 9)
    del cfg["routes"]
    cfg["engine"]["workers"] = 1  # the cache is per worker; one makes the TTL check exact
    cfg["dns"] = {"servers": [zone.server]}
    cfg["delivery"] = {"port": port, "retry": ["1h"], "max_age": "2d",
                       "timeouts": {"connect": "3s", "idle": "2s"}}
    path = h.write_config(cfg)
    jobs = [job("dead-%d" % i, "pat%d@dead.test" % i) for i in range(3)]
    jobs += [job("eq-%d" % i, "pat%d@eq.test" % i) for i in range(24)]
    jobs += [job("busy", "pat@busy.test"), job("implicit", "pat@implicit.test"), job("nullmx", "pat@nullmx.test"),
             job("nx", "pat@nosuch.test"), job("fail", "pat@x.fail.example")]
    h.xadd_jobs(redis, jobs)
    herald = h.run_herald(path)
    h.wait_notes(redis, len(jobs), timeout=60, herald=herald)
    asked = zone.queries("eq.test")
    # A second wave inside the TTL: no new MX query for eq.test.
    wave2 = [job("eq2-%d" % i, "later%d@eq.test" % i) for i in range(4)]
    h.xadd_jobs(redis, wave2)
    h.wait_notes(redis, len(jobs) + len(wave2), timeout=30, herald=herald)
    herald.stop()
    notes = {n["job"]: n for n in h.read_notes(redis)}
    fails = h.Failures()

    for i in range(3):
        n = notes.get("dead-%d" % i, {})
        fails.check(n.get("event") == "delivered" and n.get("mx") == "mx-live.dead.test"
                    and n.get("remote_ip") == "127.0.0.3",
                    "dead primary: should be delivered via mx-live.dead.test [127.0.0.3]: %s"
                    % h.format_note(n))
    n = notes.get("busy", {})
    fails.check(n.get("event") == "delivered" and n.get("mx") == "mx-ok.busy.test",
                "a 421 greeting should move on to the next MX: %s" % h.format_note(n))
    eq = [notes.get("eq-%d" % i, {}) for i in range(24)]
    fails.check(all(n.get("event") == "delivered" for n in eq), "eq.test: all delivered")
    hosts = {n.get("mx") for n in eq}
    fails.check(hosts == {"a.eq.test", "b.eq.test"},
                "equal preferences should both be used, saw %s" % hosts)
    n = notes.get("implicit", {})
    fails.check(n.get("event") == "delivered" and n.get("remote_ip") == "127.0.0.4",
                "implicit MX: delivered to the domain's A record: %s" % h.format_note(n))
    n = notes.get("nullmx", {})
    fails.check(n.get("event") == "bounced" and n.get("enhanced") == "5.1.10",
                "null MX: bounced 5.1.10: %s" % h.format_note(n))
    n = notes.get("nx", {})
    fails.check(n.get("event") == "bounced" and n.get("enhanced") == "5.1.2",
                "NXDOMAIN: bounced 5.1.2: %s" % h.format_note(n))
    n = notes.get("fail", {})
    fails.check(n.get("event") == "deferred" and "DNS" in n.get("reply", ""),
                "DNS server failure: deferred: %s" % h.format_note(n))
    fails.check(zone.queries("eq.test") == asked,
                "second wave within the TTL should not query eq.test again (%d then %d)"
                % (asked, zone.queries("eq.test")))
    fails.check(live3.count() + live4.count() == 3 + 24 + 1 + 1 + 4,
                "servers should hold 33 messages, have %d + %d" % (live3.count(), live4.count()))
    # The test button for direct delivery walks the same MX list.
    r = h.herald_cli(["smtp-test", "-c", path, "--tenant", "acme", "--to", "x@dead.test"])
    for line in ("mx         PASS  mx-dead.dead.test(10) mx-live.dead.test(20)",
                 "connect    FAIL  mx-dead.dead.test [127.0.0.2]",
                 "connect    PASS  mx-live.dead.test [127.0.0.3]", "send       PASS",
                 "result: PASS"):
        fails.check(line in r.stdout, "smtp-test via MX: missing %r in:\n%s" % (line, r.stdout))
    r = h.herald_cli(["smtp-test", "-c", path, "--tenant", "acme", "--domain", "nullmx.test"])
    fails.check(r.returncode == 1 and "null MX" in r.stdout,
                "smtp-test on a null-MX domain: exit %d\n%s" % (r.returncode, r.stdout))
    fails.raise_if_any("MX routing")


if __name__ == "__main__":
    h.main(run)
