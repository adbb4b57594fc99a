"""The platform examples (examples/python, examples/node, examples/php) do
what docs/integration.md says, against a real herald:

- the template reminder is delivered, rendered from the tenant's template;
- the scheduled reminder that a `replaces` job replaces ends `cancelled`
  and its replacement is delivered (carrying replaces/replaced);
- the scheduled reminder a `cancel` entry names ends `cancelled`, and the
  control entry's note says result=cancelled;
- a second run of the same script sends nothing: its jobs that go now end
  `duplicate`, its scheduled copies wait unsent, and the receiver's count
  is unchanged;
- the script's consumer group saw every note exactly once, XACKed it, and
  took over (XAUTOCLAIM) a note another consumer of the group had read and
  never acknowledged.

Each example runs against its own redis-server, receiver and herald. The
engine runs one worker: the examples enqueue a job and its cancel a few
microseconds apart, and with two workers the cancel can overtake the job
(result=not-seen; the job is then cancelled only when its send_at comes,
docs/integration.md). Node.js runs after `npm ci` into a copy of
examples/node; a missing node/npm, phpredis or an npm ci that fails is a
skip (77) naming what is missing, after the other examples have run."""

import email
import email.policy
import os
import shutil
import subprocess
import time

import harness as h

EXAMPLES = os.path.join(h.SRC, "examples")
TEMPLATES = os.path.join(h.SRC, "config", "templates")
GROUP = "platform"
JOB_IDS = ("appt-1001-reminder", "appt-1002-reminder", "appt-1002-moved",
           "appt-1003-reminder", "appt-1003-cancel")


def prepare(lang):
    """The command that runs one example, or (None, why it cannot run)."""
    if lang == "python":
        return [h.PY, os.path.join(EXAMPLES, "python", "enqueue.py")], None
    if lang == "php":
        php = shutil.which("php")
        if not php:
            return None, "php not found (Debian packages php-cli php-redis)"
        cp = subprocess.run([php, "-r", "exit(extension_loaded('redis') ? 0 : 3);"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        if cp.returncode != 0:
            return None, "php has no redis extension (Debian package php-redis)"
        return [php, os.path.join(EXAMPLES, "php", "enqueue.php")], None
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        return None, "node or npm not found (Debian packages nodejs npm)"
    work = h.tmpdir().mkdir("node-example")
    for name in ("package.json", "package-lock.json", "enqueue.js"):
        shutil.copy(os.path.join(EXAMPLES, "node", name), work)
    h.log("npm ci in %s" % work)
    try:
        cp = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                            cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            timeout=300)
    except subprocess.TimeoutExpired:
        return None, "npm ci took more than 300 s (is the npm registry reachable?)"
    if cp.returncode != 0:
        tail = cp.stdout.decode("utf-8", "replace").strip().splitlines()[-5:]
        return None, "npm ci failed (exit %d): %s" % (cp.returncode, " / ".join(tail))
    return [node, os.path.join(work, "enqueue.js")], None


def run_example(argv, env, timeout=120):
    """Run the example to completion; returns its printed notes as
    [(entry id, event, job)]."""
    try:
        cp = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            timeout=h.scaled(timeout))
    except subprocess.TimeoutExpired:
        raise h.TestFailure("%s did not finish within %.0f s" % (argv[-1], h.scaled(timeout)))
    return printed_notes(argv, cp.returncode, cp.stdout, cp.stderr)


def printed_notes(argv, rc, out, err):
    """What an example printed, as [(entry id, event, job)]; its exit status
    must be 0 and its stderr empty."""
    out = out.decode("utf-8", "replace")
    err = err.decode("utf-8", "replace")
    if rc != 0 or err.strip():
        raise h.TestFailure("%s: exit %d\nstdout:\n%s\nstderr:\n%s" % (
            argv[-1], rc, out[-3000:], err[-3000:]))
    lines = []
    for line in out.splitlines():
        parts = line.split(" ")
        if len(parts) < 3 or not parts[2].startswith("job="):
            raise h.TestFailure("%s printed a line that is not a note: %r" % (argv[-1], line))
        lines.append((parts[0], parts[1], parts[2][4:]))
    h.log("%s printed %d notes" % (argv[-1], len(lines)))
    return lines


def text_of(msg_bytes):
    msg = email.message_from_bytes(msg_bytes, policy=email.policy.default)
    parts = {}
    for part in msg.walk():
        if part.get_content_type() in ("text/plain", "text/html"):
            parts[part.get_content_type()] = part.get_content()
    return msg, parts


def check_example(lang, argv, fails):
    smtp = h.start_aiosmtpd()
    redis = h.start_redis()
    # The tenant's templates as config/herald.example.yaml has them.
    cfg = h.write_config(h.base_config(
        redis, smtp.port, engine={"workers": 1},
        delivery={"retry": ["1m"], "max_age": "1h"},
        tenants={"acme": {"templates": {"reminder": {
            "subject": "Your {{ what }} on {{ day }}",
            "text": os.path.join(TEMPLATES, "reminder.txt"),
            "html": os.path.join(TEMPLATES, "reminder.html")}}}}), name="%s.yaml" % lang)
    herald = h.run_herald(cfg)
    env = dict(os.environ, HERALD_REDIS_URL=redis.url, NOTES_CONSUMER="reader-1",
               NOTES_CLAIM_IDLE_MS="1000", NOTES_IDLE_MS=str(int(h.scaled(3000))))
    r = redis.client
    tag = "%s: " % lang

    # ---- first run ----
    printed = run_example(argv, env)
    notes = h.wait_terminal(redis, JOB_IDS, timeout=30, herald=herald)
    by = h.notes_by_job(notes)

    def terminal(job_id):
        t = [n for n in by.get(job_id, []) if h.is_terminal(n)]
        fails.check(len(t) == 1, tag + "%s: want one terminal note, got %s" % (
            job_id, [h.format_note(n) for n in by.get(job_id, [])]))
        return t[0] if t else {}

    n = terminal("appt-1001-reminder")
    fails.check(n.get("event") == "delivered" and n.get("ref") == "appt-1001",
                tag + "the template reminder: %s" % h.format_note(n))
    for field in ("tenant", "to", "attempt", "at", "latency_ms", "code", "enhanced", "reply",
                  "mx", "remote_ip", "local_ip", "tls", "message_id", "entry", "alignment"):
        fails.check(n.get(field), tag + "the delivered note has no %s: %s" % (field, n))
    n = terminal("appt-1002-reminder")
    fails.check(n.get("event") == "cancelled" and n.get("cancelled_by")
                and "cancelled by entry" in n.get("reason", ""),
                tag + "the replaced reminder should end cancelled: %s" % n)
    n = terminal("appt-1002-moved")
    fails.check(n.get("event") == "delivered" and n.get("replaces") == "appt-1002-reminder"
                and n.get("replaced") == "cancelled",
                tag + "the replacement should be delivered, replaced=cancelled: %s" % n)
    n = terminal("appt-1003-reminder")
    fails.check(n.get("event") == "cancelled",
                tag + "the cancelled reminder should end cancelled: %s" % n)
    n = terminal("appt-1003-cancel")
    fails.check(n.get("event") == "cancelled" and n.get("result") == "cancelled"
                and n.get("cancel") == "appt-1003-reminder",
                tag + "the cancel entry's note: %s" % n)

    msgs = smtp.messages()
    rcpts = sorted(rc for m in msgs for rc in m["rcpt_tos"])
    fails.check(rcpts == ["pat@example.com", "sam@example.com"],
                tag + "only the template reminder and the replacement may arrive: %s" % rcpts)
    for m in msgs:
        msg, parts = text_of(m["content"])
        if m["rcpt_tos"] == ["pat@example.com"]:
            fails.check(str(msg["subject"]) == "Your check-up on Tuesday 9 December",
                        tag + "template subject %r" % str(msg["subject"]))
            text = parts.get("text/plain", "")
            fails.check("Hello Pat," in text and "your check-up on Tuesday 9 December at 09:30"
                        in text and "Lakeside Dental" in text,
                        tag + "template text %r" % text[:300])
            fails.check("<b>Tuesday 9 December</b>" in parts.get("text/html", ""),
                        tag + "template html %r" % parts.get("text/html", "")[:300])
        else:
            fails.check("now on Friday at 10:00" in parts.get("text/plain", ""),
                        tag + "replacement text %r" % parts.get("text/plain", "")[:300])

    # ---- a consumer of the group that read a note and crashed ----
    h.xadd_jobs(redis, [{"tenant": "acme", "id": "other-1", "to": "lee@example.com",
                         "subject": "s", "text": "t"}])
    h.wait_terminal(redis, ["other-1"], timeout=30, herald=herald)
    taken = r.xreadgroup(GROUP, "crashed", {h.EVENTS_STREAM: ">"}, count=10)
    orphans = [sid for _s, entries in taken for sid, _f in entries]
    fails.check(orphans, tag + "the crashed consumer should have read other-1's note")
    time.sleep(1.3)  # past NOTES_CLAIM_IDLE_MS

    # ---- second run: every job again, same ids ----
    before = smtp.count()
    last = r.xrevrange(h.EVENTS_STREAM, count=1)[0][0]
    second = run_example(argv, env)
    time.sleep(1)
    herald.stop()

    fails.check(smtp.count() == before,
                tag + "the second run sent %d more messages" % (smtp.count() - before))
    notes = h.read_notes(redis)
    again = h.notes_by_job(h.read_notes(redis, after="(" + last))
    for jid in ("appt-1001-reminder", "appt-1002-moved"):
        evs = [n.get("event") for n in again.get(jid, [])]
        fails.check(evs == ["duplicate"], tag + "second run, %s: want [duplicate], got %s"
                    % (jid, evs))
    # Scheduled copies claim their id when they are read: the second run's
    # copies of the replaced and the cancelled reminders are duplicates at
    # once, and nothing of theirs waits in the retry set to be sent later.
    for jid in ("appt-1002-reminder", "appt-1003-reminder"):
        evs = [n.get("event") for n in again.get(jid, [])]
        fails.check(evs == ["duplicate"], tag + "second run, %s: want [duplicate], got %s"
                    % (jid, evs))
    waiting = [k for k in r.zrange("herald:retry", 0, -1)
               if r.hget(k, "id") in ("appt-1002-reminder", "appt-1003-reminder")]
    fails.check(not waiting, tag + "second run: copies of cancelled/replaced reminders left "
                "in the retry set: %s" % waiting)
    evs = [(n.get("event"), n.get("result")) for n in again.get("appt-1003-cancel", [])]
    fails.check(len(evs) == 1 and evs[0][0] == "cancelled",
                tag + "second run, the cancel entry: %s" % evs)
    delivered = [n.get("job") for n in notes if n.get("event") == "delivered"]
    fails.check(sorted(delivered) == ["appt-1001-reminder", "appt-1002-moved", "other-1"],
                tag + "delivered notes: %s" % delivered)

    # ---- the script's consumer group saw every note once ----
    seen = [sid for sid, _ev, _job in printed + second]
    dup = sorted(sid for sid in set(seen) if seen.count(sid) > 1)
    fails.check(not dup, tag + "notes printed more than once: %s" % dup)
    ids = [n["_id"] for n in notes]
    fails.check(sorted(set(seen)) == ids, tag + "printed %d distinct notes, the stream has %d"
                " (missing %s)" % (len(set(seen)), len(ids), sorted(set(ids) - set(seen))[:5]))
    fails.check(all(o in [s for s, _e, _j in second] for o in orphans),
                tag + "the second run should have claimed the crashed consumer's %s" % orphans)
    want = {n["_id"]: (n.get("event"), n.get("job")) for n in notes}
    for sid, ev, job in printed + second:
        fails.check(want.get(sid) == (ev, job), tag + "printed %s %s job=%s, the note is %s"
                    % (sid, ev, job, want.get(sid)))
    pending = r.xpending(h.EVENTS_STREAM, GROUP)["pending"]
    fails.check(pending == 0, tag + "%d notes left unacknowledged in group %s" % (pending, GROUP))
    lag = [g.get("lag") for g in r.xinfo_groups(h.EVENTS_STREAM) if g["name"] == GROUP]
    fails.check(lag == [0], tag + "group %s lag %s (unread notes)" % (GROUP, lag))
    smtp.stop()
    redis.stop()


def run():
    fails = h.Failures()
    skipped = []
    for lang in ("python", "node", "php"):
        argv, why = prepare(lang)
        if argv is None:
            h.log("SKIP the %s example: %s" % (lang, why))
            skipped.append("%s: %s" % (lang, why))
            continue
        h.log("---- the %s example ----" % lang)
        check_example(lang, argv, fails)
    fails.raise_if_any("examples")
    if skipped:
        raise h.Skip("not run: " + "; ".join(skipped))


if __name__ == "__main__":
    h.main(run)
