"""From alignment in the engine (DESIGN "From alignment"), with SPF
evaluated at start through a real DNS server (dnsmasq):
  - tenant rw: no DKIM, SPF fails for the egress IP, from_fallback rewrite
    -> delivered From "display name" <notify@platform.test>, Reply-To the
    tenant's address (a job's own reply_to is kept), note alignment=rewritten;
    a raw message's own From field is rewritten too (its From goes to
    Reply-To unless it has one), not only the envelope;
  - tenant rf: same, from_fallback refuse -> `rejected`, field from,
    reason unaligned-from, nothing sent;
  - tenant ok: SPF passes for the egress IP -> From untouched, aligned-spf;
  - tenant sd: from_fallback send (the default) -> as is, sent-unchecked."""

import email
import email.policy

import harness as h
from dnszone import DnsZone


def run():
    zone = DnsZone([
        'txt-record=nospf.test,"v=spf1 ip4:192.0.2.0/24 -all"',
        'txt-record=refuse.test,"v=spf1 -all"',
        'txt-record=spfok.test,"v=spf1 include:_spf.spfok.test -all"',
        'txt-record=_spf.spfok.test,"v=spf1 ip4:127.0.0.0/29 -all"',
    ])
    smtp = h.start_aiosmtpd()
    redis = h.start_redis()
    cfg = h.base_config(redis, smtp.port, tenants={
        "rw": {"from": "desk@nospf.test", "from_name": "Clinic Rw", "from_fallback": "rewrite"},
        "rf": {"from": "desk@refuse.test", "from_fallback": "refuse"},
        "ok": {"from": "desk@spfok.test", "from_fallback": "rewrite"},
        "sd": {"from": "desk@nospf.test"},
    })
    cfg["egress"] = {"default": ["127.0.0.1"]}
    cfg["dns"] = {"servers": [zone.server]}
    cfg["sender"] = {"address": "notify@platform.test"}
    path = h.write_config(cfg)

    def job(i, tenant, **kw):
        j = {"id": i, "tenant": tenant, "to": "%s@example.test" % i, "subject": "Reminder",
             "text": "Tomorrow 9:00"}
        j.update(kw)
        return j

    jobs = [job("rw1", "rw"), job("rw2", "rw", reply_to="front@nospf.test"), job("rf1", "rf"),
            job("ok1", "ok"), job("sd1", "sd"),
            {"id": "rwraw1", "tenant": "rw", "to": "rwraw1@example.test",
             "raw": "From: Front Desk <desk@nospf.test>\nSubject: Raw\n\nTomorrow 9:00\n"},
            {"id": "rwraw2", "tenant": "rw", "to": "rwraw2@example.test",
             "raw": "Subject: Raw\r\nFrom: desk@nospf.test\r\nReply-To: front@nospf.test\r\n"
                    "\r\nTomorrow 9:00\r\n"}]
    h.xadd_jobs(redis, jobs)
    herald = h.run_herald(path)
    notes = {n["job"]: n for n in h.wait_terminal(redis, [j["id"] for j in jobs], timeout=60,
                                                  herald=herald)}
    smtp.wait_count(6, 10)
    herald.stop()
    fails = h.Failures()
    msgs = {}
    for m in smtp.messages():
        msg = email.message_from_bytes(m["content"], policy=email.policy.default)
        msgs[m["rcpt_tos"][0].split("@")[0]] = (m, msg)

    def note(i):
        return notes.get(i, {})

    n = note("rw1")
    fails.check(n.get("event") == "delivered" and n.get("alignment") == "rewritten",
                "rw1: delivered, alignment rewritten: %s" % h.format_note(n))
    if "rw1" in msgs:
        m, msg = msgs["rw1"]
        fails.check(msg["From"] == "Clinic Rw <notify@platform.test>",
                    "rw1: From rewritten with the display name, got %r" % msg["From"])
        fails.check(msg["Reply-To"] == "desk@nospf.test",
                    "rw1: Reply-To the tenant's address, got %r" % msg["Reply-To"])
        fails.check(m["mail_from"] == "notify@platform.test",
                    "rw1: envelope sender the platform address, got %r" % m["mail_from"])
    else:
        fails.add("rw1 not received")
    if "rw2" in msgs:
        fails.check(msgs["rw2"][1]["Reply-To"] == "front@nospf.test",
                    "rw2: the job's reply_to is kept, got %r" % msgs["rw2"][1]["Reply-To"])
    else:
        fails.add("rw2 not received")

    for i, reply in (("rwraw1", "Front Desk <desk@nospf.test>"), ("rwraw2", "front@nospf.test")):
        n = note(i)
        fails.check(n.get("event") == "delivered" and n.get("alignment") == "rewritten",
                    "%s: delivered, alignment rewritten: %s" % (i, h.format_note(n)))
        if i not in msgs:
            fails.add("%s not received" % i)
            continue
        m, msg = msgs[i]
        froms = [a.addr_spec for a in msg["From"].addresses] if msg["From"] else []
        fails.check(froms == ["notify@platform.test"] and len(msg.get_all("From")) == 1,
                    "%s: the raw From field rewritten, got %r" % (i, msg.get_all("From")))
        fails.check(msg.get_all("Reply-To") == [reply],
                    "%s: Reply-To %r, got %r" % (i, reply, msg.get_all("Reply-To")))
        fails.check(m["mail_from"] == "notify@platform.test",
                    "%s: envelope sender the platform address, got %r" % (i, m["mail_from"]))

    n = note("rf1")
    fails.check(n.get("event") == "rejected" and n.get("reason") == "unaligned-from"
                and n.get("field") == "from" and n.get("alignment") == "refused",
                "rf1: rejected unaligned-from: %s" % h.format_note(n))
    fails.check("rf1" not in msgs, "rf1 must not be sent")

    n = note("ok1")
    fails.check(n.get("event") == "delivered" and n.get("alignment") == "aligned-spf",
                "ok1: delivered, aligned-spf: %s" % h.format_note(n))
    if "ok1" in msgs:
        fails.check(msgs["ok1"][1]["From"] == "desk@spfok.test" and msgs["ok1"][1]["Reply-To"] is None,
                    "ok1: From untouched, no Reply-To: %r %r" % (msgs["ok1"][1]["From"],
                                                                 msgs["ok1"][1]["Reply-To"]))
    else:
        fails.add("ok1 not received")

    n = note("sd1")
    fails.check(n.get("event") == "delivered" and n.get("alignment") == "sent-unchecked",
                "sd1: delivered as is, sent-unchecked: %s" % h.format_note(n))
    if "sd1" in msgs:
        fails.check(msgs["sd1"][1]["From"] == "desk@nospf.test", "sd1: From untouched")
    fails.check(zone.queries("spfok.test") >= 1, "SPF of spfok.test should have been looked up")
    fails.check(zone.queries("nospf.test") >= 1, "SPF of nospf.test should have been looked up")
    zone.stop()
    fails.raise_if_any("From alignment")


if __name__ == "__main__":
    h.main(run)
