"""schemas/job.schema.json and schemas/note.schema.json, as published for
platform developers: good jobs of every kind pass and bad ones fail (two
kinds of content, a CR in a header field, an unknown field, a field only
herald writes, a bad priority); a real note passes and a broken one fails.
(Every note the integration suite reads goes through note.schema.json in
harness.read_notes.)"""

import json
import os

import harness as h


def run():
    try:
        import jsonschema
    except ImportError:
        raise h.Skip("python3-jsonschema not installed")
    fails = h.Failures()
    load = lambda n: json.load(open(os.path.join(h.SRC, "schemas", n)))
    job = jsonschema.Draft202012Validator(load("job.schema.json"))
    note = jsonschema.Draft202012Validator(load("note.schema.json"))
    jsonschema.Draft202012Validator.check_schema(job.schema)
    jsonschema.Draft202012Validator.check_schema(note.schema)
    base = {"tenant": "acme", "to": "pat@example.com", "id": "appt-1-reminder"}
    good = [dict(base, subject="Reminder", text="See you at 9"),
            dict(base, subject="Reminder", html="<p>9</p>", priority="high",
                 send_at="2026-12-24T09:00:00Z", expires_at="1798102800000", ref="appt-1"),
            dict(base, template="reminder", **{"var.day": "Mon", "var.time": "9:00"}),
            dict(base, raw="From: a@acme.test\r\nSubject: x\r\n\r\nbody\r\n"),
            dict(base, subject="Moved", text="10:00", replaces="appt-1-reminder"),
            {"tenant": "acme", "id": "appt-1-cancel", "cancel": "appt-1-reminder"}]
    bad = [dict(base, subject="S", text="t", template="reminder"),
           dict(base, subject="S\r\nBcc: x@evil.test", text="t"),
           dict(base, subject="S", text="t", colour="blue"),
           dict(base, subject="S", text="t", counted="1"),
           dict(base, subject="S", text="t", priority="urgent"),
           dict(base, text="no subject"),
           {"to": "pat@example.com", "subject": "S", "text": "t"}]
    for j in good:
        errs = list(job.iter_errors(j))
        fails.check(not errs, "good job refused: %s: %s" % (j, errs[:1]))
    for j in bad:
        fails.check(list(job.iter_errors(j)), "bad job accepted: %s" % j)
    n = {"event": "delivered", "job": "appt-1-reminder", "tenant": "acme", "to": "pat@example.com",
         "attempt": "1", "at": "1796280000000", "code": "250", "enhanced": "2.0.0",
         "reply": "2.0.0 Ok", "entry": "1796280000000-0", "latency_ms": "14"}
    fails.check(not list(note.iter_errors(n)), "a delivered note: %s" % list(note.iter_errors(n)))
    u = {"event": "unsubscribed", "tenant": "acme", "to": "pat@example.com", "at": "1796280000000",
         "reason": "one-click unsubscribe", "source": "list-unsubscribe-post"}
    fails.check(not list(note.iter_errors(u)), "an unsubscribed note: %s" % list(note.iter_errors(u)))
    for broken in ({k: v for k, v in u.items() if k != "to"},
                   {k: v for k, v in n.items() if k != "job"},
                   dict(n, event="sent"), dict(n, at="yesterday"), dict(n, code="2500"),
                   {k: v for k, v in n.items() if k != "tenant"},
                   {k: v for k, v in n.items() if k != "at"},
                   {"event": "rejected", "job": "x", "tenant": "acme", "at": "1796280000000"}):
        fails.check(list(note.iter_errors(broken)), "a broken note passed: %s" % broken)
    fails.raise_if_any("schemas")


if __name__ == "__main__":
    h.main(run)
