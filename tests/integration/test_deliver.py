"""1,000 jobs from two tenants, through `herald enqueue` and `herald run`, to
a real receiving SMTP server (aiosmtpd). Each job must end in exactly one
`delivered` note, and each received message must decode to exactly what was
enqueued, with CRLF line endings and lines of at most 998 octets, whatever
line breaks and dots the job's bodies contained."""

import email
import email.policy
import re

import harness as h

N_JOBS = 1000

SUBJECTS = [
    "Appointment reminder",
    "Rappel : rendez-vous chez le Dr Müller à 14h30 ✓",
    "Erinnerung: Termin für Bello (Impfung) – bitte 10 Minuten früher kommen",
    "予約のリマインダー: 明日 10:00",
    "A very long subject line that goes on and on to force header folding in the "
    "generated message, well past seventy-eight columns, with ünïcödé near the end",
]

TEXT_BODIES = [
    "Hi Sam,\nyour appointment is tomorrow at 09:15.\nSee you!\n",
    ".leading dot on the first line\n..two dots\n.\nand a lone dot above",
    "bare LF\nbare CR\rCRLF\r\nmixed\n\r\nend",
    "line one\n.\nline after a lone dot\n.\n",
    "Grüße aus der Praxis — 🦷 Zahnreinigung am 12.03. um 08:30\nDanke!",
    "trailing spaces   \nand tabs\t\nx" + "y" * 1500 + "\nlong line above",
    "From the clinic\nFrom: not a header\n>quoted\n",
]

HTML_BODIES = [
    "<p>Hi Sam,</p><p>your appointment is <b>tomorrow</b> at 09:15.</p>",
    "<html><body>\n.\n<p>dot lines</p>\n.hidden\r\n</body></html>",
    "<p>Bonjour, votre rendez-vous : <em>mardi</em> — à bientôt ✓</p>\r.\r",
    "<div>" + "<span>a&nbsp;b</span>" * 120 + "</div>",
]


def make_jobs():
    jobs = []
    for i in range(N_JOBS):
        ref = "R%04d" % i
        tenant = "acme" if i % 2 == 0 else "beta"
        job = {
            "id": "deliver-%04d" % i,
            "tenant": tenant,
            "to": "patient%04d@clinic%d.test" % (i, i % 7),
            "ref": ref,
            "subject": "[%s] %s" % (ref, SUBJECTS[i % len(SUBJECTS)]),
        }
        kind = i % 3  # 0: text only, 1: html only, 2: both
        if kind in (0, 2):
            job["text"] = TEXT_BODIES[i % len(TEXT_BODIES)]
        if kind in (1, 2):
            job["html"] = HTML_BODIES[i % len(HTML_BODIES)]
        jobs.append(job)
    return jobs


def lines_of(text):
    """Body text with every line break form as \\n and no trailing breaks:
    the engine normalises line endings and may end the body with one."""
    return text.replace("\r\n", "\n").replace("\r", "\n").rstrip("\n")


def body_of(msg, subtype):
    part = msg.get_body(preferencelist=(subtype,))
    if part is None or part.get_content_subtype() != subtype:
        return None
    return part.get_content()


def check_wire(content, fails, who):
    if not content.endswith(b"\r\n"):
        fails.add("%s: message does not end with CRLF" % who)
    for n, line in enumerate(content.split(b"\r\n")[:-1], 1):
        if b"\n" in line or b"\r" in line:
            fails.add("%s: line %d has a bare CR or LF: %r" % (who, n, line[:80]))
            return
        if len(line) > 998:
            fails.add("%s: line %d is %d octets (> 998)" % (who, n, len(line)))
            return


def run():
    smtp = h.start_aiosmtpd()
    redis = h.start_redis()
    cfg = h.write_config(h.base_config(redis, smtp.port))
    jobs = make_jobs()
    by_id = {j["id"]: j for j in jobs}
    by_rcpt = {j["to"]: j for j in jobs}

    h.enqueue(cfg, jobs)
    h.log("enqueued %d jobs" % len(jobs))
    herald = h.run_herald(cfg)
    h.wait_terminal(redis, list(by_id), timeout=180, herald=herald)
    smtp.wait_count(N_JOBS, 10)
    herald.stop()
    h.log("herald drained and exited 0")

    notes = h.read_notes(redis)
    fails = h.Failures()
    fails.check(len(notes) == N_JOBS, "expected exactly %d notes, got %d (%s)" % (
        N_JOBS, len(notes), h.summarize(notes)))
    msgid_of = {}
    for job_id, ns in h.notes_by_job(notes).items():
        if job_id not in by_id:
            fails.add("note for unknown job %r: %s" % (job_id, h.format_note(ns[0])))
            continue
        if len(ns) != 1:
            fails.add("job %s has %d notes: %s" % (job_id, len(ns), "; ".join(
                h.format_note(n) for n in ns)))
        n = ns[0]
        job = by_id[job_id]
        ok = (n.get("event") == "delivered" and n.get("code") == "250"
              and n.get("attempt") == "1" and n.get("message_id")
              and re.fullmatch(r"\d+", n.get("latency_ms", "")) is not None
              and n.get("tenant") == job["tenant"] and n.get("ref") == job["ref"]
              and n.get("to") == job["to"])
        if not ok:
            fails.add("job %s: expected delivered code=250 attempt=1 with message_id, "
                      "latency_ms, tenant=%s ref=%s to=%s; got %s" % (
                          job_id, job["tenant"], job["ref"], job["to"], h.format_note(n)))
        msgid_of[job_id] = n.get("message_id", "").strip("<>")
    fails.raise_if_any("case notes")

    received = smtp.messages()
    fails.check(len(received) == N_JOBS, "expected %d messages at the SMTP server, got %d" % (
        N_JOBS, len(received)))
    seen = set()
    for m in received:
        who = m["path"]
        if len(m["rcpt_tos"]) != 1 or m["rcpt_tos"][0] not in by_rcpt:
            fails.add("%s: unexpected recipients %r" % (who, m["rcpt_tos"]))
            continue
        job = by_rcpt[m["rcpt_tos"][0]]
        who = "%s (%s)" % (job["id"], m["path"])
        if job["id"] in seen:
            fails.add("%s: received twice" % who)
        seen.add(job["id"])
        check_wire(m["content"], fails, who)
        msg = email.message_from_bytes(m["content"], policy=email.policy.default)
        tenant_from = "reminders@acme.test" if job["tenant"] == "acme" else "desk@beta.test"
        fails.check(msg["from"] is not None and msg["from"].addresses
                    and msg["from"].addresses[0].addr_spec == tenant_from,
                    "%s: From %r, expected %s" % (who, msg["from"], tenant_from))
        fails.check(msg["to"] is not None and job["to"] in str(msg["to"]),
                    "%s: To %r" % (who, msg["to"]))
        fails.check(msg["date"] is not None and msg["mime-version"] is not None,
                    "%s: missing Date or MIME-Version" % who)
        mid = (msg["message-id"] or "").strip().strip("<>")
        fails.check(mid and mid == msgid_of.get(job["id"]),
                    "%s: Message-ID %r but the note says %r" % (who, mid, msgid_of.get(job["id"])))
        subject = str(msg["subject"] or "")
        fails.check(subject == job["subject"], "%s: subject %r, expected %r" % (
            who, subject, job["subject"]))
        for field, subtype in (("text", "plain"), ("html", "html")):
            got = body_of(msg, subtype)
            if field not in job:
                fails.check(got is None, "%s: has a text/%s part but the job had no %s" % (
                    who, subtype, field))
                continue
            if got is None:
                fails.add("%s: no text/%s part" % (who, subtype))
            elif lines_of(got) != lines_of(job[field]):
                fails.add("%s: %s body differs:\n      got      %r\n      expected %r" % (
                    who, field, lines_of(got)[:300], lines_of(job[field])[:300]))
        if "text" in job and "html" in job:
            fails.check(msg.get_content_type() == "multipart/alternative",
                        "%s: content type %s, expected multipart/alternative" % (
                            who, msg.get_content_type()))
    missing = sorted(set(by_id) - seen)
    fails.check(not missing, "%d jobs never arrived, e.g. %s" % (len(missing), missing[:5]))
    fails.raise_if_any("received messages")
    h.log("%d delivered notes and %d matching messages" % (len(notes), len(received)))


if __name__ == "__main__":
    h.main(run)
