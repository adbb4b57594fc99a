"""What the engine's stage order guarantees, end to end:
  1. the message is built after admission: a duplicate id and a suppressed
     recipient whose rendered message would be too large end `duplicate`
     and `suppressed`, never `rejected` (their message is never built, let
     alone signed); an admitted one is rejected when it is built;
  2. a relay host is resolved through `dns.servers` when mail goes, not at
     start: a relay name that does not resolve lets `herald run` start and
     defers its tenant's mail (the other tenant's mail still flows), and a
     relay name only the configured DNS server knows is used;
  3. the category of herald's own failures comes from what failed, not from
     the words of the message: a refused connection to mx.classlink.test is
     `network`, not `tls`.
"""

import os

import harness as h
from dnszone import DnsZone


def run():
    fails = h.Failures()
    smtp = h.start_aiosmtpd()
    relay_smtp = h.start_aiosmtpd(host="127.0.0.6", port=h.free_port())
    refused_port = h.free_port()  # nothing listens there on 127.0.0.7
    zone = DnsZone([
        "host-record=relay.clinic.test,127.0.0.6",
        "mx-host=classlink.test,mx.classlink.test,10",
        "host-record=mx.classlink.test,127.0.0.7",
    ])
    redis = h.start_redis()
    tdir = h.tmpdir().mkdir("stage-templates")
    with open(os.path.join(tdir, "t.txt"), "w") as f:
        # 100 copies of a 1 KB variable: a 4 KB job renders to ~100 KB, over
        # max_message_bytes, which only building the message can find out.
        f.write("Hello {{name}}\n" * 100)
    cfg = h.base_config(
        redis, smtp.port,
        tenants={
            "acme": {"from": "reminders@acme.test",
                     "templates": {"t": {"subject": "Hi", "text": "%s/t.txt" % tdir}}},
            "relayed": {"from": "desk@relayed.test",
                        "relay": {"host": "relay.clinic.test", "port": relay_smtp.port,
                                  "tls": "none"}},
            "lost": {"from": "desk@lost.test",
                     "relay": {"host": "relay.nowhere.test", "port": smtp.port, "tls": "none"}},
        })
    # classlink.test has no route: it goes by MX to a refused port.
    cfg["routes"] = {"clinic.test": "127.0.0.1:%d" % smtp.port}
    cfg["dns"] = {"servers": [zone.server]}
    cfg["engine"]["max_message_bytes"] = "64KiB"
    cfg["delivery"] = {"port": refused_port, "retry": ["1h"], "max_age": "2d",
                       "timeouts": {"connect": "3s", "idle": "2s"}}
    path = h.write_config(cfg, "stages.yaml")
    redis.client.sadd("herald:suppress:acme", "gone@clinic.test")

    def tpl(job_id, to, **more):
        j = {"id": job_id, "tenant": "acme", "to": to, "template": "t"}
        j.update(more)
        return j

    big = {"var.name": "x" * 1000}
    jobs = [
        tpl("first", "pat@clinic.test", **{"var.name": "Pat"}),
    ]
    h.xadd_jobs(redis, jobs)
    herald = h.run_herald(path)
    h.wait_notes(redis, 1, timeout=h.scaled(20), herald=herald)
    later = [
        tpl("first", "pat@clinic.test", **big),     # same id, too large once built
        tpl("supp", "gone@clinic.test", **big),     # suppressed, too large once built
        tpl("broken", "kim@clinic.test", **big),    # admitted, too large: rejected
        {"id": "r1", "tenant": "relayed", "to": "ann@example.test", "subject": "S", "text": "t"},
        {"id": "l1", "tenant": "lost", "to": "bo@example.test", "subject": "S", "text": "t"},
        {"id": "c1", "tenant": "acme", "to": "cy@classlink.test", "subject": "S", "text": "t"},
    ]
    h.xadd_jobs(redis, later)
    h.wait_notes(redis, 1 + len(later), timeout=h.scaled(30), herald=herald)
    herald.check()
    herald.stop()
    notes = h.read_notes(redis)
    by = {}
    for n in notes:
        by.setdefault(n.get("job"), []).append(n)

    def last(job_id):
        return by.get(job_id, [{}])[-1]

    first = [n.get("event") for n in by.get("first", [])]
    fails.check(first == ["delivered", "duplicate"],
                "a repeated id is a duplicate even when its message would be too large: %s"
                % first)
    fails.check(last("supp").get("event") == "suppressed",
                "a suppressed recipient is never built: %s" % h.format_note(last("supp")))
    n = last("broken")
    fails.check(n.get("event") == "rejected",
                "an admitted job whose message is too large is rejected: %s" % h.format_note(n))

    n = last("r1")
    fails.check(n.get("event") == "delivered" and n.get("remote_ip") == "127.0.0.6",
                "a relay name known only to dns.servers is resolved there: %s" % h.format_note(n))
    n = last("l1")
    fails.check(n.get("event") == "deferred" and "relay" in n.get("reply", ""),
                "an unresolvable relay defers its tenant's mail: %s" % h.format_note(n))

    n = last("c1")
    fails.check(n.get("event") == "deferred" and n.get("category") == "network"
                and n.get("mx") == "mx.classlink.test",
                "a refused connection to mx.classlink.test is category network: %s"
                % h.format_note(n))
    fails.raise_if_any("engine stages")


if __name__ == "__main__":
    h.main(run)
