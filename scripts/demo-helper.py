#!/usr/bin/python3
"""Python side of scripts/demo: make sample reminders, draw the progress bar,
print the summary. Needs python3-redis only.

    demo-helper.py jobs REDIS_PORT N OUT.jsonl     good jobs to OUT (for `herald enqueue`),
                                                   malformed ones XADDed directly; prints total
    demo-helper.py progress REDIS_PORT TOTAL HERALD_PID TIMEOUT_S
    demo-helper.py summary REDIS_PORT TOTAL START_MS
"""

import collections
import datetime
import json
import os
import random
import sys
import time

import redis

JOBS, EVENTS = "herald:jobs", "herald:events"

TENANTS = {
    "lakeside-dental": ("Lakeside Dental", "reminders@lakeside-dental.test",
                        ["check-up and clean", "filling", "hygienist visit", "crown fitting"]),
    "northside-physio": ("Northside Physio", "bookings@northside-physio.test",
                         ["initial assessment", "follow-up session", "sports massage"]),
    "city-vets": ("City Vets", "frontdesk@city-vets.test",
                  ["annual vaccination for {pet}", "dental check for {pet}",
                   "post-op check for {pet}"]),
}
FIRST = ["Olivia", "Noah", "Amelia", "Liam", "Sofia", "Mateo", "Chloé", "Jonas", "Aoife",
         "Łukasz", "Zoë", "Kwame", "Priya", "Søren", "Hana", "Diego", "Mia", "Ahmed"]
LAST = ["Smith", "Müller", "García", "O'Brien", "Nguyen", "Kowalski", "Okafor", "Rossi",
        "Johansson", "Patel", "Dubois", "Tanaka", "Murphy", "Silva"]
PETS = ["Bella", "Max", "Luna", "Charlie", "Milo", "Daisy", "Rocky", "Coco"]
DOMAINS = ["mail.example.test", "inbox.example.test", "post.example.test", "home.example.test"]
TERMINAL = {"delivered", "bounced", "expired", "suppressed", "rejected", "duplicate",
            "cancelled"}


def client(port):
    return redis.Redis(host="127.0.0.1", port=int(port), decode_responses=True)


def reminder(i, rng):
    tenant = list(TENANTS)[i % len(TENANTS)]
    clinic, sender, kinds = TENANTS[tenant]
    first, last = rng.choice(FIRST), rng.choice(LAST)
    when = datetime.datetime(2025, 3, 3, 8, 0) + datetime.timedelta(
        days=rng.randrange(0, 14), minutes=15 * rng.randrange(0, 40))
    what = rng.choice(kinds).format(pet=rng.choice(PETS))
    day = when.strftime("%a %d %b at %H:%M")
    local = "%s.%s%d" % (first.lower(), last.lower().replace("'", ""), i)
    local = local.encode("ascii", "ignore").decode() or "client%d" % i
    subject = "Reminder: your %s at %s on %s" % (what, clinic, day)
    text = ("Hi %s,\n\nThis is a reminder of your %s at %s on %s.\n"
            "Please arrive 10 minutes early.\n\nTo reschedule, reply to this e-mail.\n"
            "-- \n%s\n" % (first, what, clinic, day, clinic))
    html = ("<p>Hi %s,</p><p>This is a reminder of your <b>%s</b> at %s on "
            "<b>%s</b>.</p><p>Please arrive 10 minutes early.</p><p>&mdash; %s</p>"
            % (first, what, clinic, day, clinic))
    return {"tenant": tenant, "id": "appt-%05d" % i, "ref": "client-%05d" % (10000 + i),
            "to": "%s@%s" % (local, DOMAINS[i % len(DOMAINS)]), "subject": subject,
            "text": text, "html": html}


def malformed():
    """Jobs a buggy platform might push; each should end `rejected`."""
    good = {"tenant": "lakeside-dental", "subject": "Reminder", "text": "See you soon."}
    return [
        dict(good, id="bad-1", ref="client-bad-1"),                     # no `to`
        dict(good, id="bad-2", ref="client-bad-2", to="maria.garcia@@mail.example.test"),
        dict(good, id="bad-3", ref="client-bad-3", to="noah.smith@mail.example.test",
             subject="Reminder\r\nBcc: everyone@example.test"),
        dict(good, id="bad-4", ref="client-bad-4", to="liam@mail.example.test",
             tenant="westside-ortho"),
        dict(good, id="bad-5", ref="client-bad-5", to="mia@mail.example.test",
             **{"from": "offers@spam.test"}),
        {"tenant": "city-vets", "id": "bad-6", "ref": "client-bad-6", "to": "zoe@mail.example.test"},
    ]


def cmd_jobs(port, n, out):
    rng = random.Random(42)
    n = int(n)
    with open(out, "w") as f:
        for i in range(n):
            f.write(json.dumps(reminder(i, rng), ensure_ascii=False) + "\n")
    r = client(port)
    for job in malformed():
        r.xadd(JOBS, job)
    print(n + len(malformed()))


def read_new(r, last):
    batch = r.xrange(EVENTS, min=last, max="+", count=5000)
    if not batch:
        return [], last
    return [f for _, f in batch], "(" + batch[-1][0]


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def cmd_progress(port, total, pid, timeout_s):
    r, total, pid = client(port), int(total), int(pid)
    deadline = time.monotonic() + float(timeout_s)
    last, done, counts = "-", set(), collections.Counter()
    tty = sys.stderr.isatty()
    width = 40
    shown_at = 0.0
    while True:
        new, last = read_new(r, last)
        for note in new:
            counts[note.get("event", "?")] += 1
            if note.get("event") in TERMINAL:
                done.add(note.get("job"))
        n = len(done)
        now = time.monotonic()
        finished = n >= total
        if tty or finished or now - shown_at >= 2:
            fill = width * min(n, total) // max(total, 1)
            line = "[%s%s] %5d/%d  %s" % ("#" * fill, "." * (width - fill), n, total, " ".join(
                "%s=%d" % kv for kv in sorted(counts.items())))
            sys.stderr.write(("\r" + line) if tty else (line + "\n"))
            sys.stderr.flush()
            shown_at = now
        if finished:
            sys.stderr.write("\n" if tty else "")
            return 0
        if not alive(pid):
            sys.stderr.write("\nherald exited before every job had a case note\n")
            return 1
        if now > deadline:
            sys.stderr.write("\ntimed out after %ss: %d of %d jobs have a final note\n"
                             % (timeout_s, n, total))
            return 1
        time.sleep(0.2)


def pct(values, p):
    if not values:
        return 0
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100.0 * (len(values) - 1))))]


def fmt_ms(ms):
    return datetime.datetime.fromtimestamp(int(ms) / 1000.0).strftime("%H:%M:%S.%f")[:-3]


def show_note(n):
    lines = ["  %s  %-9s job=%s tenant=%s ref=%s" % (
        fmt_ms(n.get("at", "0")) if n.get("at", "").isdigit() else "--:--:--",
        n.get("event", "?"), n.get("job", "?"), n.get("tenant", "-"), n.get("ref", "-"))]
    if n.get("to"):
        lines.append("      to %s (attempt %s, %s ms after enqueue)" % (
            n["to"], n.get("attempt", "?"), n.get("latency_ms", "?")))
    if n.get("code"):
        # `reply` is the server's own text, enhanced code included.
        lines.append("      server said: %s %s" % (n["code"],
                                                n.get("reply", "").replace("\n", " / ")))
    if n.get("mx") or n.get("remote_ip"):
        lines.append("      via %s [%s] from %s, tls %s" % (
            n.get("mx", "?"), n.get("remote_ip", "?"), n.get("local_ip", "?"), n.get("tls", "?")))
    if n.get("message_id"):
        lines.append("      message-id <%s>" % n["message_id"])
    if n.get("next_attempt_at", "").isdigit():
        lines.append("      next attempt at %s" % fmt_ms(n["next_attempt_at"]))
    if n.get("field") or n.get("reason"):
        lines.append("      rejected: field '%s': %s" % (n.get("field", ""), n.get("reason", "")))
    return "\n".join(lines)


def cmd_summary(port, total, start_ms):
    r, total, start_ms = client(port), int(total), int(start_ms)
    notes, last = [], "-"
    while True:
        more, last = read_new(r, last)
        if not more:
            break
        notes.extend(more)
    table = collections.defaultdict(collections.Counter)
    latencies, last_at = [], start_ms
    for n in notes:
        tenant = n.get("tenant") or "(none)"
        ev = n.get("event", "?")
        table[tenant][ev] += 1
        if ev in TERMINAL:
            if n.get("latency_ms", "").isdigit():
                latencies.append(int(n["latency_ms"]))
            if n.get("at", "").isdigit():
                last_at = max(last_at, int(n["at"]))
    cols = ["delivered", "deferred", "bounced", "expired", "rejected"]
    extra = sorted({e for c in table.values() for e in c} - set(cols))
    cols += extra
    print("%-20s" % "tenant" + "".join("%11s" % c for c in cols))
    print("-" * (20 + 11 * len(cols)))
    for tenant in sorted(table):
        print("%-20s" % tenant + "".join("%11d" % table[tenant][c] for c in cols))
    print("-" * (20 + 11 * len(cols)))
    print("%-20s" % "all" + "".join("%11d" % sum(t[c] for t in table.values()) for c in cols))
    delivered = sum(t["delivered"] for t in table.values())
    terminal = sum(t[e] for t in table.values() for e in TERMINAL)
    secs = max((last_at - start_ms) / 1000.0, 0.001)
    print()
    print("jobs: %d   final notes: %d   delivered: %d in %.2fs = %.0f messages/s" % (
        total, terminal, delivered, secs, delivered / secs))
    print("enqueue-to-note latency (final notes): p50 %d ms, p99 %d ms, max %d ms" % (
        pct(latencies, 50), pct(latencies, 99), max(latencies or [0])))
    print()
    print("sample case notes:")
    picked = []
    for ev in ("delivered", "deferred", "bounced", "expired", "rejected"):
        for n in notes:
            if n.get("event") == ev:
                picked.append(n)
                break
    for n in picked[:5]:
        print(show_note(n))
    return 0 if terminal >= total else 1


def main(argv):
    cmds = {"jobs": cmd_jobs, "progress": cmd_progress, "summary": cmd_summary}
    if len(argv) < 2 or argv[1] not in cmds:
        sys.stderr.write(__doc__)
        return 2
    return cmds[argv[1]](*argv[2:]) or 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
