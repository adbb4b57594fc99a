"""Content kinds and recipient checks end to end, decoded by Python's email
package on the receiving side:
- a template job (files named in the config) arrives rendered, vars
  HTML-escaped in the html part and as-is in the text part; a missing var
  or an unknown template is `rejected` naming the field;
- a raw job arrives with Date and Message-ID added; a raw job with a
  999-octet line is rejected;
- an IDN recipient domain goes out as A-labels (RCPT TO and To:);
- a UTF-8 local part is delivered where SMTPUTF8 is offered and `bounced`
  (category bad-mailbox) where it is not;
- a likely typo (gmial.com) is delivered with a `suggestion` note field;
- check-config on a template file that does not exist exits 2 with
  file:line:col."""

import email
import email.policy
import os
import re

import harness as h

TEXT_TPL = "Hello {{ name }},\nyour {{what}} is on {{day}}.\n"
HTML_TPL = "<p>Hello {{name}}, your {{ what }} is on {{day}}.</p>"


def run():
    smtp = h.start_aiosmtpd()
    plain = h.start_aiosmtpd(extra=["--no-smtputf8"])
    redis = h.start_redis()
    tdir = h.tmpdir().mkdir("templates")
    with open(os.path.join(tdir, "reminder.txt"), "w") as f:
        f.write(TEXT_TPL)
    with open(os.path.join(tdir, "reminder.html"), "w") as f:
        f.write(HTML_TPL)
    cfg = h.write_config(h.base_config(
        redis, smtp.port,
        routes={"*.noutf8.test": "127.0.0.1:%d" % plain.port, "*": "127.0.0.1:%d" % smtp.port},
        tenants={"acme": {"templates": {"reminder": {
            "subject": "Reminder: {{what}} on {{ day }}",
            "text": "templates/reminder.txt", "html": "templates/reminder.html"}}}}))

    name = "Zo\u00eb & <Bob> \"B\" O'Neil"
    long_day = "x" * 3000
    raw_body = "Line one\n.\nLine three\n"
    jobs = [
        {"id": "tpl-ok", "tenant": "acme", "to": "ann@example.test", "template": "reminder",
         "var.name": name, "var.what": "check-up \u00e0 9h", "var.day": long_day},
        {"id": "tpl-missing", "tenant": "acme", "to": "ann@example.test",
         "template": "reminder", "var.name": "Ann", "var.day": "Monday"},
        {"id": "tpl-unknown", "tenant": "acme", "to": "ann@example.test", "template": "nope"},
        {"id": "tpl-crlf", "tenant": "acme", "to": "ann@example.test", "template": "reminder",
         "var.name": "Ann", "var.what": "x\r\nBcc: v@evil.test", "var.day": "Monday"},
        {"id": "raw-ok", "tenant": "acme", "to": "raw@example.test",
         "raw": "From: Acme <reminders@acme.test>\nTo: raw@example.test\nSubject: raw one\n\n"
                + raw_body},
        {"id": "raw-long", "tenant": "acme", "to": "raw@example.test",
         "raw": "From: reminders@acme.test\n\n" + "y" * 999 + "\n"},
        {"id": "idn", "tenant": "acme", "to": "pat@b\u00fccher.example", "subject": "idn",
         "text": "t"},
        {"id": "utf8-ok", "tenant": "acme", "to": "j\u00fcrgen@example.test", "subject": "u",
         "text": "t"},
        {"id": "utf8-no", "tenant": "acme", "to": "j\u00fcrgen@x.noutf8.test", "subject": "u",
         "text": "t"},
        {"id": "typo", "tenant": "acme", "to": "pat@gmial.com", "subject": "typo", "text": "t"},
        {"id": "no-typo", "tenant": "acme", "to": "pat@clinic.test", "subject": "ok",
         "text": "t"},
    ]
    h.xadd_jobs(redis, jobs)
    herald = h.run_herald(cfg)
    h.wait_terminal(redis, [j["id"] for j in jobs], timeout=60, herald=herald)
    smtp.wait_count(5, 10)
    herald.stop()

    fails = h.Failures()
    notes = {}
    for n in h.read_notes(redis):
        if h.is_terminal(n):
            notes.setdefault(n.get("job"), []).append(n)

    def note(job_id, event, **want):
        ns = notes.get(job_id, [])
        if len(ns) != 1 or ns[0].get("event") != event or any(
                not re.search(v, ns[0].get(k, "")) for k, v in want.items()):
            fails.add("%s: expected one %s note with %r, got %s" % (
                job_id, event, want, "; ".join(h.format_note(n) for n in ns) or "none"))
            return None
        h.log("ok  %-12s %s" % (job_id, h.format_note(ns[0])))
        return ns[0]

    note("tpl-ok", "delivered")
    note("tpl-missing", "rejected", field="^var.what$",
         reason=r"template 'reminder' uses \{\{what\}\} but the job has no var.what")
    note("tpl-unknown", "rejected", field="^template$", reason="no template 'nope'")
    note("tpl-crlf", "rejected", field="^var.what$", reason="CR or LF")
    note("raw-ok", "delivered")
    note("raw-long", "rejected", field="^raw$", reason="longer than 998 octets")
    note("idn", "delivered")
    note("utf8-ok", "delivered")
    note("utf8-no", "bounced", category="^bad-mailbox$")
    n = note("typo", "delivered", suggestion="^pat@gmail.com$")
    n = note("no-typo", "delivered")
    if n is not None:
        fails.check("suggestion" not in n, "no-typo: unexpected suggestion %r" % n.get("suggestion"))

    by_rcpt = {}
    for m in smtp.messages():
        msg = email.message_from_bytes(m["content"], policy=email.policy.default)
        by_rcpt.setdefault(tuple(m["rcpt_tos"]), []).append((m, msg))
    got = by_rcpt.get(("ann@example.test",), [])
    if fails.check(len(got) == 1, "template: expected one message to ann, got %d" % len(got)):
        msg = got[0][1]
        esc = name.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace(
            '"', "&quot;").replace("'", "&#39;")
        want_subject = "Reminder: check-up \u00e0 9h on " + long_day
        fails.check(str(msg["subject"]) == want_subject,
                    "template subject %r" % str(msg["subject"])[:120])
        text = msg.get_body(preferencelist=("plain",)).get_content()
        fails.check(text.replace("\r\n", "\n") == TEXT_TPL.replace("{{ name }}", name).replace(
            "{{what}}", "check-up \u00e0 9h").replace("{{day}}", long_day),
            "template text %r" % text[:200])
        html = msg.get_body(preferencelist=("html",)).get_content()
        fails.check(html.rstrip("\r\n") == HTML_TPL.replace("{{name}}", esc).replace(
            "{{ what }}", "check-up \u00e0 9h").replace("{{day}}", long_day),
            "template html %r" % html[:200])
        for line in got[0][0]["content"].split(b"\r\n"):
            fails.check(len(line) <= 998, "template output has a %d-octet line" % len(line))
    got = by_rcpt.get(("raw@example.test",), [])
    if fails.check(len(got) == 1, "raw: expected one message, got %d" % len(got)):
        m, msg = got[0]
        fails.check(msg["Date"] is not None and msg["Message-ID"] is not None,
                    "raw: Date/Message-ID not added")
        fails.check(m["content"].endswith(raw_body.replace("\n", "\r\n").encode()),
                    "raw: body changed: %r" % m["content"][-60:])
    got = by_rcpt.get(("pat@xn--bcher-kva.example",), [])
    fails.check(len(got) == 1 and "pat@xn--bcher-kva.example" in str(got[0][1]["To"]),
                "idn: expected RCPT TO and To: pat@xn--bcher-kva.example; got %r" % (
                    sorted(by_rcpt)))
    fails.check(len(by_rcpt.get(("j\u00fcrgen@example.test",), [])) == 1,
                "utf8 local part: not delivered on the SMTPUTF8 server: %r" % sorted(by_rcpt))
    fails.check(plain.count() == 0, "the server without SMTPUTF8 got %d messages" % plain.count())

    bad = h.write_config(h.base_config(redis, smtp.port, tenants={"acme": {"templates": {
        "r": {"subject": "s", "text": "templates/missing.txt"}}}}), name="bad.yaml")
    cp = h.herald_cli(["check-config", "-c", bad])
    fails.check(cp.returncode == 2 and re.search(r"bad\.yaml:\d+:\d+: cannot read text template "
                                                 r"'.*missing\.txt'", cp.stderr),
                "check-config with a missing template file: exit %d, stderr %r" % (
                    cp.returncode, cp.stderr[-300:]))
    fails.raise_if_any("content")


if __name__ == "__main__":
    h.main(run)
