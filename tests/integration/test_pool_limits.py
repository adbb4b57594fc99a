"""Pools: a provider's connection limit holds across its MX hosts (two
exchangers of one provider share the limit, measured at the sink that
serves both), connections are reused, and an IPv6-only exchanger is reached
from the pool's IPv6 egress address while IPv4 ones use the IPv4 address."""

import harness as h
from dnszone import DnsZone


def job(job_id, to):
    return {"id": job_id, "tenant": "acme", "to": to, "subject": "Reminder", "text": "9:00"}


def run():
    port = h.free_port()
    sink = h.start_sink(["--latency-ms", "5"], host="127.0.0.3", port=port)
    v6 = h.start_aiosmtpd(host="::1", port=port)
    zone = DnsZone([
        "mx-host=lim.test,mx1.lim.test,10",
        "mx-host=lim.test,mx2.lim.test,10",
        "host-record=mx1.lim.test,127.0.0.3",
        "host-record=mx2.lim.test,127.0.0.3",
        "mx-host=six.test,mx.six.test,10",
        "host-record=mx.six.test,::1",
    ])
    redis = h.start_redis()
    cfg = h.base_config(redis, 9)
    del cfg["routes"]
    cfg["engine"]["workers"] = 2
    cfg["egress"] = {"default": ["127.0.0.1", "::1"]}
    cfg["dns"] = {"servers": [zone.server]}
    cfg["delivery"] = {"port": port, "retry": ["1h"], "max_age": "2d",
                       "timeouts": {"idle": "2s"}}
    cfg["providers"] = {"lim": {"mx": ["*.lim.test"], "connections": 4,
                                "messages_per_connection": 1000},
                        "default": {"connections": 10}}
    path = h.write_config(cfg)
    n = 1500
    jobs = [job("lim-%d" % i, "pat%d@lim.test" % i) for i in range(n)]
    jobs += [job("six-%d" % i, "pat%d@six.test" % i) for i in range(3)]
    h.xadd_jobs(redis, jobs)
    herald = h.run_herald(path)
    h.wait_notes(redis, len(jobs), timeout=90, herald=herald)
    herald.stop()
    sink.stop()
    notes = {x["job"]: x for x in h.read_notes(redis)}
    st = sink.stats()
    fails = h.Failures()
    lim = [notes.get("lim-%d" % i, {}) for i in range(n)]
    fails.check(all(x.get("event") == "delivered" for x in lim),
                "all lim.test jobs delivered: %s" % h.summarize(lim))
    fails.check({x.get("mx") for x in lim} == {"mx1.lim.test", "mx2.lim.test"},
                "both exchangers used")
    fails.check(st["max_concurrent"] <= 4,
                "provider limit is 4 connections across both MX hosts; the sink saw %d at once"
                % st["max_concurrent"])
    fails.check(st["connections"] < n / 10,
                "connections should be reused: %d connections for %d messages"
                % (st["connections"], n))
    six = [notes.get("six-%d" % i, {}) for i in range(3)]
    fails.check(all(x.get("event") == "delivered" and x.get("remote_ip") == "::1"
                    and x.get("local_ip") == "::1" for x in six),
                "IPv6 exchanger reached from the IPv6 egress: %s"
                % [h.format_note(x) for x in six])
    fails.check(all(x.get("local_ip") == "127.0.0.1" for x in lim[:50]),
                "IPv4 exchangers from the IPv4 egress address")
    fails.check(v6.count() == 3, "IPv6 server should hold 3 messages, has %d" % v6.count())
    h.log("sink: %d messages over %d connections, at most %d at once"
          % (st["messages"], st["connections"], st["max_concurrent"]))
    fails.raise_if_any("pool limits")


if __name__ == "__main__":
    h.main(run)
