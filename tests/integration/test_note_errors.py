"""Redis refusing a note script for a while loses no note and sends no
email twice.

Before: any error reply other than NOSCRIPT/LOADING logged `note_failed`
and released the job; XAUTOCLAIM brought it back and it was delivered
again. Now transient refusals park the note and re-send it, the claim kept
fresh meanwhile. Two phases, 6 jobs each, which the receiver accepts 3 s
after RCPT, so the refusal (1 s after enqueueing, for 6 s) lands while
they are in flight:
  OOM   maxmemory 1 byte under noeviction. Redis 7 lets a script without
        flags that has already written (ours XACK first) go on writing, so
        the note scripts are not refused here; the phase shows intake and
        the mover ride it out with nothing lost or doubled;
  BUSY  a script from another client spins (busy-reply-threshold 100 ms)
        until SCRIPT KILL: every command, note scripts included, gets BUSY;
  READONLY  Redis becomes a replica (of a port nobody listens on, so it
        keeps its data), as a primary does after a failover, then a primary
        again: every write, note scripts and XREADGROUP included, gets
        READONLY meanwhile.
Checked: every job ends with exactly one terminal note, `delivered`, the
receiver got each message exactly once, and herald logged note_parked."""

import threading
import time

import harness as h

N = 6


def phase(fails, redis, smtp, herald, name, start, stop):
    ids = ["%s-%02d" % (name, i) for i in range(N)]
    h.xadd_jobs(redis, [{"id": j, "tenant": "acme", "to": "slow-%s@clinic.test" % j,
                         "subject": "Reminder", "text": "9:00"} for j in ids])
    time.sleep(1)  # at the receiver now, which answers after 3 s
    start()
    time.sleep(6)
    stop()
    h.wait_terminal(redis, ids, timeout=h.scaled(60), herald=herald)
    time.sleep(h.scaled(3))  # a duplicate would need claim_idle (2 s) and a delivery
    notes = h.notes_by_job(h.read_notes(redis))
    for j in ids:
        terminal = [n for n in notes.get(j, []) if n.get("event") not in ("deferred", "queued")]
        fails.check(len(terminal) == 1 and terminal[0].get("event") == "delivered",
                    "%s: %s should end with one delivered note: %s"
                    % (name, j, [n.get("event") for n in notes.get(j, [])]))
    got = {}
    for m in smtp.messages():
        for r in m["rcpt_tos"]:
            got[r] = got.get(r, 0) + 1
    twice = [j for j in ids if got.get("slow-%s@clinic.test" % j, 0) != 1]
    h.log("%s: %d jobs, receiver counts %s" % (
        name, N, sorted(set(got.get("slow-%s@clinic.test" % j, 0) for j in ids))))
    fails.check(not twice, "%s: delivered other than exactly once: %s" % (name, twice[:4]))


def run():
    fails = h.Failures()
    smtp = h.start_aiosmtpd(slow_seconds=3.0)
    redis = h.start_redis()
    cfg = h.base_config(redis, smtp.port)
    cfg["delivery"] = {"retry": ["1s"], "max_age": "1h", "timeouts": {"idle": "2s"}}
    herald = h.run_herald(h.write_config(cfg))
    c = redis.client

    c.config_set("maxmemory-policy", "noeviction")
    phase(fails, redis, smtp, herald, "oom",
          lambda: c.config_set("maxmemory", "1"), lambda: c.config_set("maxmemory", "0"))

    c.config_set("busy-reply-threshold" if "busy-reply-threshold" in c.config_get("*")
                 else "lua-time-limit", "100")
    spinner = {}

    def spin():
        import redis as r
        cl = r.Redis(host="127.0.0.1", port=redis.port)
        try:
            cl.eval("while true do end", 0)
        except Exception as e:  # SCRIPT KILL ends it with an error
            spinner["ended"] = str(e)

    th = threading.Thread(target=spin, daemon=True)

    def kill():
        import redis as r
        for _ in range(50):
            try:
                r.Redis(host="127.0.0.1", port=redis.port).script_kill()
                break
            except Exception:
                time.sleep(0.1)
        th.join(5)

    phase(fails, redis, smtp, herald, "busy", th.start, kill)

    nobody = h.free_port()
    phase(fails, redis, smtp, herald, "readonly",
          lambda: c.execute_command("REPLICAOF", "127.0.0.1", str(nobody)),
          lambda: c.execute_command("REPLICAOF", "NO", "ONE"))
    log = herald.read_stderr()
    fails.check("event=note_parked" in log, "herald should have logged note_parked")
    herald.stop()
    fails.raise_if_any("note script refused for a while")


if __name__ == "__main__":
    h.main(run)
