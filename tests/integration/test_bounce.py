"""Permanent and temporary SMTP failures become the right case notes: a 550
5.1.1 at RCPT is one `bounced` note carrying the server's reply; a 451 4.7.1
is retried on the schedule (`deferred` notes with next_attempt_at) until the
max age, then ends in exactly one terminal note."""

import re
import time

import harness as h

MAX_AGE_S = 5


def run():
    smtp = h.start_aiosmtpd()
    redis = h.start_redis()
    cfg = h.write_config(h.base_config(redis, smtp.port, delivery={
        "retry": ["1s"], "max_age": "%ds" % MAX_AGE_S}))
    jobs = [
        {"id": "bounce-1", "tenant": "acme", "to": "bounce@example.test", "ref": "p-1",
         "subject": "Reminder", "text": "Tomorrow 9:00"},
        {"id": "bounce-2", "tenant": "beta", "to": "bounce.other@clinic.test", "ref": "p-2",
         "subject": "Reminder", "html": "<p>Tomorrow 9:30</p>"},
        {"id": "defer-1", "tenant": "acme", "to": "defer@example.test", "ref": "p-3",
         "subject": "Reminder", "text": "Tomorrow 10:00"},
        {"id": "ok-1", "tenant": "beta", "to": "fine@example.test", "ref": "p-4",
         "subject": "Reminder", "text": "Tomorrow 11:00"},
    ]
    h.enqueue(cfg, jobs)
    herald = h.run_herald(cfg)
    h.wait_terminal(redis, [j["id"] for j in jobs], timeout=MAX_AGE_S + 60, herald=herald)
    # Give a second terminal note (a bug) the chance to show up.
    time.sleep(2)
    herald.stop()
    notes = h.read_notes(redis)
    by_job = h.notes_by_job(notes)
    fails = h.Failures()

    for job_id, to in (("bounce-1", "bounce@example.test"), ("bounce-2", "bounce.other@clinic.test")):
        ns = by_job.pop(job_id, [])
        n = ns[0] if ns else {}
        fails.check(len(ns) == 1 and n.get("event") == "bounced" and n.get("code") == "550"
                    and n.get("enhanced") == "5.1.1"
                    and "Recipient address rejected: User unknown" in n.get("reply", "")
                    and n.get("to") == to and n.get("category", "bad-mailbox") == "bad-mailbox",
                    "%s: expected one bounced note, code 550, enhanced 5.1.1, the server's "
                    "reply text, category bad-mailbox; got %s" % (
                        job_id, "; ".join(h.format_note(x) for x in ns) or "none"))

    ns = by_job.pop("defer-1", [])
    deferred = [n for n in ns if n.get("event") == "deferred"]
    terminal = [n for n in ns if h.is_terminal(n)]
    shown = "; ".join(h.format_note(n) for n in ns) or "none"
    fails.check(len(deferred) >= 1, "defer-1: expected at least one deferred note; got %s" % shown)
    fails.check(len(terminal) == 1, "defer-1: expected exactly one terminal note; got %s" % shown)
    for n in deferred:
        at, nxt = n.get("at", ""), n.get("next_attempt_at", "")
        fails.check(re.fullmatch(r"\d+", nxt or "x") is not None
                    and (not at.isdigit() or int(nxt) >= int(at)),
                    "defer-1: deferred note needs next_attempt_at (unix ms, not before at): %s"
                    % h.format_note(n))
        fails.check(n.get("code") == "451" and n.get("enhanced") == "4.7.1",
                    "defer-1: deferred note should carry 451 4.7.1: %s" % h.format_note(n))
    attempts = [int(n["attempt"]) for n in ns if n.get("attempt", "").isdigit()]
    fails.check(attempts == sorted(attempts) and len(set(attempts)) == len(attempts),
                "defer-1: attempts should increase note by note: %s" % attempts)
    if terminal:
        t = terminal[0]
        fails.check(ns[-1] is t, "defer-1: the terminal note must be the last one: %s" % shown)
        fails.check(t.get("event") in ("bounced", "expired"),
                    "defer-1: expected bounced or expired after max_age; got %s" % h.format_note(t))
        h.log("defer-1: %d deferred, then %s after %s ms" % (
            len(deferred), t.get("event"), t.get("latency_ms", "?")))

    ns = by_job.pop("ok-1", [])
    fails.check(len(ns) == 1 and ns[0].get("event") == "delivered",
                "ok-1: expected one delivered note; got %s" % (
                    "; ".join(h.format_note(x) for x in ns) or "none"))
    for job_id, ns in by_job.items():
        fails.add("unexpected notes for %r: %s" % (job_id, "; ".join(map(h.format_note, ns))))

    rcpts = sorted(r for m in smtp.messages() for r in m["rcpt_tos"])
    fails.check(rcpts == ["fine@example.test"],
                "only fine@ may have been accepted by the server; got %r" % rcpts)
    fails.raise_if_any("bounce and defer")


if __name__ == "__main__":
    h.main(run)
