"""Delivery security against real TLS servers (aiosmtpd with certificates
from a CA made in the test): opportunistic STARTTLS, plaintext when not
offered, `required` deferring with category tls, `verify` accepting a good
certificate and deferring a wrong name or an expired one, the one-time
fallback to plaintext after a failed handshake under opportunistic, and
session resumption across a pool's connections."""

import harness as h
from testca import TestCA


def job(job_id, tenant, domain):
    return {"id": job_id, "tenant": tenant, "to": "pat@%s" % domain, "subject": "Reminder",
            "text": "See you at 9:00"}


def run():
    ca = TestCA(h.tmpdir().path)
    good = ca.issue("good", ["mx.good.test", "127.0.0.1"])
    wrong = ca.issue("wrong", ["mx.other.test"])
    old = ca.issue("old", ["127.0.0.1"], expired=True)

    def tls_server(cert, *more):
        return h.start_aiosmtpd(extra=["--tls-cert", cert[0], "--tls-key", cert[1]] + list(more))

    srv_good = tls_server(good)
    srv_plain = h.start_aiosmtpd()
    srv_wrong = tls_server(wrong)
    srv_old = tls_server(old)
    srv_broken = tls_server(good, "--tls-max-version", "1.1")
    redis = h.start_redis()
    cfg = h.base_config(redis, srv_plain.port)
    cfg["routes"] = {
        "good.test": "127.0.0.1:%d" % srv_good.port,
        "plain.test": "127.0.0.1:%d" % srv_plain.port,
        "wrong.test": "127.0.0.1:%d" % srv_wrong.port,
        "old.test": "127.0.0.1:%d" % srv_old.port,
        "broken.test": "127.0.0.1:%d" % srv_broken.port,
    }
    cfg["tenants"] = {
        "opp": {"from": "r@opp.example"},
        "req": {"from": "r@req.example", "tls": "required"},
        "ver": {"from": "r@ver.example", "tls": "verify"},
    }
    cfg["delivery"] = {"retry": ["1h"], "max_age": "2d", "ca_file": ca.ca_file,
                       "timeouts": {"idle": "2s"}}
    # One connection per worker and one message per connection: every
    # message after a worker's first to a host is a fresh connection that
    # can resume the cached session.
    cfg["providers"] = {"default": {"connections": 2, "messages_per_connection": 1}}
    path = h.write_config(cfg)
    jobs = [job("opp-good-%d" % i, "opp", "good.test") for i in range(6)]
    jobs += [job("opp-plain", "opp", "plain.test"), job("req-plain", "req", "plain.test"),
             job("ver-good", "ver", "good.test"), job("ver-wrong", "ver", "wrong.test"),
             job("ver-old", "ver", "old.test"), job("opp-wrong", "opp", "wrong.test"),
             job("opp-broken", "opp", "broken.test")]
    h.xadd_jobs(redis, jobs)
    herald = h.run_herald(path)
    notes = h.wait_terminal(redis, [j["id"] for j in jobs if j["id"] not in
                                    ("req-plain", "ver-wrong", "ver-old")],
                            timeout=60, herald=herald)
    h.wait_notes(redis, len(jobs), timeout=30, herald=herald)
    herald.stop()
    notes = h.read_notes(redis)
    by = {n["job"]: n for n in notes}
    fails = h.Failures()

    def note(jid):
        return by.get(jid, {})

    for i in range(6):
        n = note("opp-good-%d" % i)
        fails.check(n.get("event") == "delivered" and n.get("tls", "").startswith("TLSv1."),
                    "opp-good-%d: delivered over TLS expected: %s" % (i, h.format_note(n)))
    n = note("opp-plain")
    fails.check(n.get("event") == "delivered" and n.get("tls") == "none",
                "opportunistic without STARTTLS should deliver in plaintext: %s" % h.format_note(n))
    n = note("req-plain")
    fails.check(n.get("event") == "deferred" and n.get("category") == "tls"
                and "STARTTLS" in n.get("reply", ""),
                "required without STARTTLS should defer with category tls: %s" % h.format_note(n))
    n = note("ver-good")
    fails.check(n.get("event") == "delivered" and n.get("tls", "").startswith("TLSv1."),
                "verify with a good certificate should deliver: %s" % h.format_note(n))
    n = note("ver-wrong")
    fails.check(n.get("event") == "deferred" and n.get("category") == "tls"
                and "mismatch" in n.get("reply", "").lower(),
                "verify with the wrong name should defer (tls, mismatch): %s" % h.format_note(n))
    n = note("ver-old")
    fails.check(n.get("event") == "deferred" and n.get("category") == "tls"
                and "expired" in n.get("reply", "").lower(),
                "verify with an expired certificate should defer (tls, expired): %s"
                % h.format_note(n))
    n = note("opp-wrong")
    fails.check(n.get("event") == "delivered" and n.get("tls", "").startswith("TLSv1."),
                "opportunistic ignores the certificate name: %s" % h.format_note(n))
    n = note("opp-broken")
    fails.check(n.get("event") == "delivered" and n.get("tls") == "none"
                and "retried without TLS" in n.get("tls_note", ""),
                "a failed handshake under opportunistic should retry in plaintext and say so: %s"
                % h.format_note(n))

    got = srv_good.messages()
    fails.check(len(got) == 7, "good server should hold 7 messages, has %d" % len(got))
    fails.check(all(m.get("tls") for m in got), "every message to the good server over TLS")
    reused = sum(1 for m in got if m.get("tls_reused"))
    fails.check(reused >= 3, "at least 3 of 7 connections should resume a session, %d did"
                % reused)
    fails.check(srv_wrong.count() == 1 and srv_old.count() == 0 and srv_plain.count() == 1,
                "wrong-name server 1 (opportunistic), expired 0, plain 1: got %d, %d, %d"
                % (srv_wrong.count(), srv_old.count(), srv_plain.count()))
    b = srv_broken.messages()
    fails.check(len(b) == 1 and not b[0].get("tls"),
                "broken-TLS server should get the message in plaintext: %s" % b)
    h.log("sessions resumed: %d of %d connections to the good server" % (reused, len(got)))
    fails.raise_if_any("TLS policies")


if __name__ == "__main__":
    h.main(run)
