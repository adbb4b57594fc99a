"""Malformed jobs, XADDed straight into the stream the way a buggy platform
would: each gets exactly one `rejected` note naming the field at fault, none
reaches the SMTP server, and a good job queued after them is still delivered
(the worker did not crash or stall)."""

import harness as h

MAX_FIELD = 4096


def base(n, **fields):
    job = {"id": "reject-%02d" % n, "tenant": "acme", "to": "rej%02d@example.test" % n,
           "ref": "case-%02d" % n, "subject": "Reminder", "text": "See you tomorrow."}
    job.update(fields)
    return job


def without(job, *keys):
    return {k: v for k, v in job.items() if k not in keys}


# (job, acceptable `field` values in the note, what it tests)
CASES = [
    (without(base(1), "to"), {"to"}, "missing to"),
    (without(base(2), "tenant"), {"tenant"}, "missing tenant"),
    (base(3, tenant="nosuch"), {"tenant"}, "unknown tenant"),
    (base(4, subject="Hello\r\nBcc: victim@evil.test"), {"subject"}, "CR/LF in subject"),
    (base(5, subject="Hello\nX-Injected: 1"), {"subject"}, "LF in subject"),
    (base(6, from_name="Dr Who\nBcc: victim@evil.test"), {"from_name"}, "LF in from_name"),
    (base(7, to="a@@b"), {"to"}, "invalid address a@@b"),
    (base(8, to="no-at"), {"to"}, "invalid address no-at"),
    (base(9, text="x" * (MAX_FIELD + 100)), {"text"}, "oversize text"),
    (base(10, html="<p>" + "y" * (MAX_FIELD + 100) + "</p>", text=None), {"html"},
     "oversize html"),
    (base(11, **{"from": "billing@evil.test"}), {"from"}, "From outside the tenant domains"),
    (without(base(12), "subject", "text"),
     {"subject", "text", "html", "content", "template", "raw", ""}, "no content"),
    (base(13, to="rej13@example.test\r\nRCPT TO:<victim@evil.test>"), {"to"},
     "CR/LF in to"),
    (base(14, reply_to="x@acme.test\nBcc: victim@evil.test"), {"reply_to"}, "LF in reply_to"),
]


def run():
    smtp = h.start_aiosmtpd()
    redis = h.start_redis()
    cfg = h.write_config(h.base_config(redis, smtp.port,
                                       engine={"max_field_bytes": MAX_FIELD}))
    jobs = []
    for job, _, _ in CASES:
        jobs.append({k: v for k, v in job.items() if v is not None})
    good = {"id": "reject-good", "tenant": "acme", "to": "good@example.test",
            "ref": "case-good", "subject": "Still working?", "text": "yes"}
    stream_ids = h.xadd_jobs(redis, jobs + [good])
    # A note names the job by its `id` field, or by the stream id when absent.
    alias = {sid: j["id"] for sid, j in zip(stream_ids, jobs + [good])}

    herald = h.run_herald(cfg)
    notes = h.wait_terminal(redis, [j["id"] for j in jobs + [good]], timeout=60, herald=herald)
    smtp.wait_count(1, 10)
    herald.stop()
    notes = h.read_notes(redis)

    grouped = {}
    for n in notes:
        grouped.setdefault(alias.get(n.get("job"), n.get("job")), []).append(n)
    fails = h.Failures()
    for (job, fields, what), sent in zip(CASES, jobs):
        ns = grouped.pop(sent["id"], [])
        if len(ns) != 1:
            fails.add("%s (%s): expected exactly one note, got %d: %s" % (
                what, sent["id"], len(ns), "; ".join(h.format_note(n) for n in ns)))
            continue
        n = ns[0]
        if n.get("event") != "rejected" or n.get("field", "") not in fields \
                or not n.get("reason"):
            fails.add("%s (%s): expected rejected with field in %s and a reason; got %s" % (
                what, sent["id"], sorted(fields), h.format_note(n)))
        else:
            h.log("ok  %-32s field=%s reason=%r" % (what, n.get("field"), n.get("reason")))
    ns = grouped.pop("reject-good", [])
    fails.check(len(ns) == 1 and ns[0].get("event") == "delivered",
                "good job after the bad ones: expected one delivered note, got %s" % (
                    "; ".join(h.format_note(n) for n in ns) or "none"))
    for job_id, ns in grouped.items():
        fails.add("unexpected notes for %r: %s" % (job_id, "; ".join(
            h.format_note(n) for n in ns)))

    received = smtp.messages()
    rcpts = [r for m in received for r in m["rcpt_tos"]]
    fails.check(rcpts == ["good@example.test"],
                "only the good job may reach the SMTP server; it received %r" % rcpts)
    fails.raise_if_any("rejected jobs")


if __name__ == "__main__":
    h.main(run)
