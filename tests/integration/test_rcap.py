"""Recipient caps are sliding windows (recipients.limit), exempt priorities
pass (recipients.exempt).

1. herald end to end, `recipients: {limit: [3/4s], exempt: [high]}`: 12 jobs
   to one recipient, one every 0.5 s, so they cross several windows. A
   MONITOR connection records every write the admission script makes to
   the recipient's log (`<prefix>rcap:<recipient>`); the sends it counted
   are read from it, with the script's own clock. Asserted: exactly the 12
   normal jobs were counted, and no 4 of them fall in any 4 s window (the
   cap's promise; a fixed window would let 3 in just before a boundary and
   3 just after). Held jobs get a `deferred` note with category
   recipient-cap and are delivered later, each exactly once. A
   `priority: high` job enqueued while the cap is full goes through with no
   deferral and is not counted. Delivered notes' `at` (herald's clock when
   the server accepted) are checked against the same cap, with 1 s of
   slack for delivery lag.
2. The admission script itself, through EVALSHA of the sha herald loaded,
   with a fake clock: exact waits at the window edge, the old fixed-window
   boundary, two caps together against a reference model over 400 calls,
   a tenant-rate wait that counts nothing, an empty caps argument (exempt)
   that reads and writes nothing, and the key's expiry.

Only "eventually delivered" depends on timing; its timeouts are generous."""

import random
import re
import socket
import threading
import time

import harness as h

WINDOW_MS = 4000
CAP = 3
RCPT_KEY = "pat@clinic.test"
RCAP_KEY = "herald:rcap:" + RCPT_KEY


class Monitor:
    """A raw MONITOR connection: every command Redis runs, scripts' own
    calls included, as (client kind, [args])."""

    ARG = re.compile(r'"((?:[^"\\]|\\.)*)"')

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.sendall(b"MONITOR\r\n")
        self.lines = []
        self.buf = b""
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:
                return
            if not data:
                return
            self.buf += data
            *done, self.buf = self.buf.split(b"\r\n")
            with self.lock:
                self.lines.extend(done)

    @staticmethod
    def _unescape(s):
        return re.sub(r"\\(.)", lambda m: m.group(1), s)

    def commands(self):
        with self.lock:
            lines = list(self.lines)
        out = []
        for raw in lines:
            line = raw.decode("utf-8", "replace")
            m = re.match(r"^\+?[\d.]+ \[\d+ ([^\]]+)\] (.*)$", line)
            if m:
                out.append((m.group(1), [self._unescape(a) for a in self.ARG.findall(m.group(2))]))
        return out

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def counted_sends(cmds, key):
    """The send times the script counted for key: each SET of the log adds
    exactly one time (the admission's `now`) to what the previous SET left,
    after trimming; the multiset difference finds it."""
    prev = []
    out = []
    for _, args in cmds:
        if len(args) >= 3 and args[0].upper() == "SET" and args[1] == key:
            cur = [int(x) for x in args[2].split()]
            left = list(prev)
            added = []
            for t in cur:
                if t in left:
                    left.remove(t)
                else:
                    added.append(t)
            out.extend(added)
            prev = cur
    return sorted(out)


def job(i, **kw):
    j = {"id": "r%d" % i, "tenant": "acme", "to": "Pat@Clinic.test", "subject": "Reminder",
         "text": "Tomorrow at 9:00"}
    j.update(kw)
    return j


def most_in_window(times, window_ms):
    times = sorted(times)
    best = 0
    for i, t in enumerate(times):
        best = max(best, sum(1 for u in times[i:] if u < t + window_ms))
    return best


def phase_engine(fails):
    rec = h.tmpdir().join("rcap.record")
    sink = h.start_sink(["--record", rec, "--latency-ms", "1"])
    redis = h.start_redis()
    mon = Monitor(redis.port)
    cfg = h.base_config(redis, sink.port,
                        recipients={"limit": ["%d/4s" % CAP], "exempt": ["high"]},
                        delivery={"retry": ["1s"], "max_age": "10m", "timeouts": {"idle": "5s"}})
    path = h.write_config(cfg, "rcap.yaml")
    herald = h.run_herald(path)
    ids = []
    urgent_sent = False
    for i in range(12):
        h.xadd_jobs(redis, [job(i)])
        ids.append("r%d" % i)
        time.sleep(0.5)
        if not urgent_sent and i >= 3:
            deferred = [n for n in h.read_notes(redis) if n.get("event") == "deferred"
                        and n.get("category") == "recipient-cap"]
            if deferred:
                # The cap is full now: the next slot frees at the deferral's
                # next_attempt_at. A high-priority notice must not wait for it.
                h.xadd_jobs(redis, [job(99, id="urgent", priority="high",
                                        subject="Appointment moved")])
                urgent_sent = True
    fails.check(urgent_sent, "no recipient-cap deferral seen while enqueueing 12 jobs at 2/s "
                "under a 3/4s cap")
    want = ids + (["urgent"] if urgent_sent else [])
    h.wait_terminal(redis, want, timeout=120, herald=herald)
    time.sleep(0.5)
    herald.check()
    herald.stop()
    sink.stop()
    cmds = mon.commands()
    mon.close()

    # The admission script takes 10 keys per job of its batch.
    sha = next((a[1] for kind, a in cmds if len(a) > 2 and a[0].upper() == "EVALSHA"
                and a[2].isdigit() and int(a[2]) >= 10 and int(a[2]) % 10 == 0), None)
    counted = counted_sends(cmds, RCAP_KEY)
    h.log("counted sends (ms from the first): %s" % [t - counted[0] for t in counted]
          if counted else "no counted sends")
    fails.check(len(counted) == 12, "the script should count the 12 normal jobs (the exempt one "
                "not at all), counted %d" % len(counted))
    for i in range(len(counted) - CAP):
        fails.check(counted[i + CAP] - counted[i] >= WINDOW_MS,
                    "sends %d and %d were counted %d ms apart: %d in one 4 s window"
                    % (i, i + CAP, counted[i + CAP] - counted[i], CAP + 1))

    notes = h.read_notes(redis)
    by = h.notes_by_job(notes)
    for j in want:
        ends = [n for n in by.get(j, []) if h.is_terminal(n)]
        fails.check(len(ends) == 1 and ends[0].get("event") == "delivered",
                    "%s: want one delivered note, got %s" % (
                        j, "; ".join(map(h.format_note, ends)) or "none"))
    held = [n for n in notes if n.get("event") == "deferred"]
    fails.check(held and all(n.get("category") == "recipient-cap" for n in held),
                "held jobs should be deferred with category recipient-cap: %s"
                % "; ".join(map(h.format_note, held[:5])))
    held_jobs = {n.get("job") for n in held}
    h.log("%d deferrals over %d jobs" % (len(held), len(held_jobs)))
    fails.check(len(held_jobs) >= 12 - 2 * CAP,
                "at 2 jobs/s against 3/4s at least %d jobs must have been held, %d were"
                % (12 - 2 * CAP, len(held_jobs)))
    fails.check("urgent" not in held_jobs, "the exempt high-priority job was held: %s"
                % "; ".join(map(h.format_note, by.get("urgent", []))))
    for n in held:
        due = int(n.get("next_attempt_at", "0"))
        fails.check(int(n["at"]) < due <= int(n["at"]) + WINDOW_MS,
                    "a deferral should wait at most one window: %s" % h.format_note(n))
    delivered_at = [int(n["at"]) for n in notes if n.get("event") == "delivered"
                    and n.get("job") != "urgent"]
    busiest = most_in_window(delivered_at, WINDOW_MS - 1000)
    fails.check(busiest <= CAP, "%d normal jobs were delivered within 3 s" % busiest)
    fails.check(len(h.sink_record(rec)) == len(want),
                "the sink should have %d messages, has %d" % (len(want), len(h.sink_record(rec))))
    return redis, sha


# ---- the script with a fake clock ----

class Script:
    def __init__(self, redis, sha):
        self.c = redis.client
        self.sha = sha
        self.n = 0

    def admit(self, rcpt, now, caps, trate=""):
        self.n += 1
        keys = ["t:idem", "t:sup", "t:gsup", "t:state:%d" % self.n, "t:state:r", "t:retry",
                "t:events", "t:rcap", "t:trate", "t:stats"]
        argv = ["%d-0" % self.n, "60000", rcpt, "0", "", str(now), caps, trate, ""]
        # A batch of one job: one verdict back.
        got = self.c.evalsha(self.sha, len(keys), *(keys + argv))
        return got[0] if isinstance(got, list) and len(got) == 1 else got


def model_wait(sent, now, caps):
    """The definition: cap (c, W) is full when c counted sends lie in
    (now - W, now]; the job may go once the c-th newest of them leaves."""
    wait = 0
    for c, w in caps:
        inside = sorted((t for t in sent if t > now - w), reverse=True)
        if len(inside) >= c:
            wait = max(wait, inside[c - 1] + w - now)
    return wait


def phase_script(fails, redis, sha):
    if not fails.check(sha is not None, "no admission EVALSHA seen on MONITOR"):
        return
    s = Script(redis, sha)

    # Exact waits at the edge: (now - W, now].
    got = [s.admit("a@x.test", t, "3 4") for t in (10000, 10001, 10002, 10003, 13999, 14000,
                                                   14000, 14001)]
    fails.check(got == ["ok", "ok", "ok", "wait:3997:recipient-cap", "wait:1:recipient-cap", "ok",
                        "wait:1:recipient-cap", "ok"], "edge of a 3/4s window: %s" % got)

    # The fixed-window failure: 3 just before a boundary, 3 just after.
    got = [s.admit("b@x.test", t, "3 4") for t in (3999, 3999, 3999, 4000, 4001, 7998, 7999)]
    fails.check(got == ["ok", "ok", "ok", "wait:3999:recipient-cap", "wait:3998:recipient-cap",
                        "wait:1:recipient-cap", "ok"], "3 at 3.999 s, then at 4.0 s: %s" % got)

    # Out of order (two processes' clocks 10 ms apart): still counted in place.
    got = [s.admit("o@x.test", t, "2 4") for t in (20010, 20000, 20005, 24000, 24010, 24011)]
    fails.check(got == ["ok", "ok", "wait:3995:recipient-cap", "ok", "ok",
                        "wait:3989:recipient-cap"],
                "out-of-order times: %s" % got)

    # Two caps against the reference model, with same-millisecond calls.
    rng = random.Random(7)
    caps = [(3, 4000), (5, 10000)]
    arg = " ".join("%d %d" % (c, w // 1000) for c, w in caps)
    sent, now, bad = [], 100000, 0
    for i in range(400):
        now += rng.choice([0, 1, 50, 200, 500, 900, 1500, 4000])
        want = model_wait(sent, now, caps)
        r = s.admit("m@x.test", now, arg)
        exp = "ok" if want == 0 else "wait:%d:recipient-cap" % want
        if r != exp:
            bad += 1
            if bad <= 5:
                fails.add("model, call %d at %d: script said %r, the definition %r" % (
                    i, now, r, exp))
        if r == "ok":
            sent.append(now)
    fails.check(len(sent) > 50, "model run admitted only %d of 400" % len(sent))
    log_len = len(s.c.get("t:rcap:m@x.test").split())
    fails.check(log_len <= 5, "the log keeps at most max(count) times, has %d" % log_len)
    pttl = s.c.pttl("t:rcap:m@x.test")
    fails.check(0 < pttl <= 10000, "the log expires with the longest window: pttl %d" % pttl)

    # A tenant-rate wait counts nothing.
    s.c.set("t:trate", str(10 ** 13))
    r = s.admit("t@x.test", 50000, "3 4", "1 10 1")
    fails.check(r.startswith("wait:") and r.endswith(":tenant-rate"), "tenant rate: %r" % r)
    fails.check(s.c.get("t:rcap:t@x.test") is None,
                "a tenant-rate wait must leave the recipient's log untouched")

    # No caps (exempt, or already counted): the log is neither read nor written.
    for t in (60000, 60001, 60002, 60003):
        s.admit("e@x.test", t, "3 4")
    before = s.c.get("t:rcap:e@x.test")
    r = s.admit("e@x.test", 60004, "")
    fails.check(r == "ok", "exempt job over the cap: %r" % r)
    fails.check(s.c.get("t:rcap:e@x.test") == before, "an exempt job must not be counted")


def run():
    fails = h.Failures()
    redis, sha = phase_engine(fails)
    phase_script(fails, redis, sha)
    fails.raise_if_any("sliding recipient caps")


if __name__ == "__main__":
    h.main(run)
