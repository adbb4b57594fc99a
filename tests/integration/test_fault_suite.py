"""The fault suite (issue 5, "never lose a reminder").

20,000 jobs go through herald while everything that can fail does:

- redis-server runs with AOF (appendfsync always) and is SIGKILLed and
  restarted once, on the same port and AOF dir, while herald runs;
- herald-sink drops ~5% of transactions mid-body (--drop: the connection is
  reset at the first body byte after DATA), so those jobs are deferred and
  retried on a short schedule (retry: [1s, 2s]);
- Redis loses its script cache once more (SCRIPT FLUSH) in another run;
- the engine is SIGKILLed at five random moments (seeded; the seed is
  printed, HERALD_FAULT_SEED replays a run) and restarted each time.

A final clean run drains the rest (bounded wait). Then every job must have
exactly one terminal note, and it must be `delivered`; every delivered job
must have reached the sink; the job stream, the retry set and the group's
pending list must be empty. Messages the sink accepted twice are counted
and printed: they may only come from the documented window (a kill between
the remote 250 and the note script), so they are bounded by
kills x workers x max_inflight and reported exactly."""

import collections
import os
import random
import signal
import time

import harness as h

N_JOBS = int(os.environ.get("HERALD_FAULT_JOBS", "20000"))
KILLS = 5
WORKERS = 2
MAX_INFLIGHT = 200
DROP = 0.05


def wait_events(redis, target, herald, label, timeout=90):
    """Wait until the events stream holds target notes (Redis may be down
    for a moment: errors are retried). Returns the count seen."""
    deadline = time.monotonic() + h.scaled(timeout)
    n = 0
    while time.monotonic() < deadline:
        herald.check()
        try:
            n = redis.client.xlen(h.EVENTS_STREAM)
        except Exception:
            time.sleep(0.05)
            continue
        if n >= target:
            return n
        time.sleep(0.01)
    raise h.TestFailure("%s: only %d notes after %.0fs, waiting for %d" % (
        label, n, h.scaled(timeout), target))


def restart_redis_hard(redis):
    """SIGKILL redis-server and start it again on the same port and dir:
    with appendfsync always nothing it acknowledged may be lost."""
    redis.proc.kill()
    redis._start(new_port=False)


def read_record(path):
    """herald-sink --record lines: "<ms> <ip> <bytes> <from> <rcpts>"."""
    seen = collections.defaultdict(list)
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 5:
                    for rcpt in parts[4].split(","):
                        seen[rcpt.lower()].append(int(parts[0]))
    except OSError:
        pass
    return seen


def run():
    seed = int(os.environ.get("HERALD_FAULT_SEED") or random.SystemRandom().randrange(1 << 31))
    h.log("fault suite seed %d (HERALD_FAULT_SEED=%d replays the schedule)" % (seed, seed))
    rng = random.Random(seed)
    t_start = time.monotonic()

    record = h.tmpdir().join("sink-record.txt")
    sink = h.start_sink(["--drop", DROP, "--seed", seed % 1000003 + 1, "--record", record,
                         "--threads", "1"])
    redis = h.start_redis(persist=True)
    cfg = h.write_config(h.base_config(
        redis, sink.port,
        engine={"workers": WORKERS, "ehlo": "test.herald", "claim_idle": "2s",
                "max_inflight": MAX_INFLIGHT, "batch": 100, "shutdown_grace": "10s"},
        delivery={"retry": ["1s", "2s"], "max_age": "1h",
                  "timeouts": {"connect": "2s", "banner": "5s", "command": "5s",
                               "data_block": "5s", "data_end": "5s", "idle": "2s"}},
        providers={"default": {"connections": 8, "messages_per_connection": 200}}))

    ids = ["f-%05d" % i for i in range(N_JOBS)]
    to_of = {}
    jobs = []
    for i, job_id in enumerate(ids):
        to = "c%05d@clinic%d.test" % (i, i % 7)
        to_of[job_id] = to
        jobs.append({"id": job_id, "tenant": "acme" if i % 2 else "beta", "to": to,
                     "ref": "appt-%d" % i, "subject": "Reminder: appointment %d" % i,
                     "text": "Your appointment is on Tuesday at 9:%02d.\n.\nReply to "
                             "reschedule." % (i % 60)})
    for k in range(0, N_JOBS, 2000):
        h.xadd_jobs(redis, jobs[k:k + 2000])
    h.log("enqueued %d jobs in %.1fs" % (N_JOBS, time.monotonic() - t_start))

    # Kill points: each run is killed after a random number of further
    # notes (a share of what is left, so every kill lands mid-run) plus a
    # random few milliseconds; redis restarts during one of the runs.
    redis_run = rng.randrange(KILLS)
    h.log("redis restarts during run %d" % (redis_run + 1))
    kill_log, kill_times, runs = [], [], []
    for run_no in range(KILLS):
        herald = h.run_herald(cfg)
        now = redis.client.xlen(h.EVENTS_STREAM)
        left = max(N_JOBS - now, 100)
        target = now + rng.randint(left // 20, left // 4)
        if run_no == redis_run:
            wait_events(redis, now + (target - now) // 2, herald, "before the redis restart")
            at = redis.client.xlen(h.EVENTS_STREAM)
            restart_redis_hard(redis)
            after = redis.client.xlen(h.EVENTS_STREAM)
            h.log("redis-server SIGKILLed and restarted at %d notes (%d after)" % (at, after))
            if after < at:
                raise h.TestFailure("redis lost notes across the restart: %d before, %d after"
                                    % (at, after))
        if run_no == (redis_run + 1) % KILLS:
            # Redis that lost its script cache (failover, SCRIPT FLUSH, a
            # restart still loading its AOF) must cost a reconnect, not jobs.
            wait_events(redis, now + (target - now) // 2, herald, "before SCRIPT FLUSH")
            redis.client.script_flush()
            h.log("SCRIPT FLUSH at %d notes" % redis.client.xlen(h.EVENTS_STREAM))
        wait_events(redis, target, herald, "run %d" % (run_no + 1))
        time.sleep(rng.uniform(0, 0.02))
        herald.check()
        herald.kill()
        kill_times.append(time.time() * 1000)
        seen = redis.client.xlen(h.EVENTS_STREAM)
        kill_log.append(seen)
        h.log("run %d: SIGKILLed herald at %d notes (target %d)" % (run_no + 1, seen, target))
        if herald.returncode != -signal.SIGKILL:
            raise h.TestFailure("herald exited with %s before the kill" % herald.returncode)
        runs.append(herald)

    final = h.run_herald(cfg)
    h.wait_terminal(redis, ids, timeout=150, herald=final)
    time.sleep(3)  # a second terminal note or a late redelivery would show here
    final.stop()
    runs.append(final)
    sink.stop()
    wall = time.monotonic() - t_start

    notes = h.read_notes(redis)
    by_job = h.notes_by_job(notes)
    fails = h.Failures()
    want = set(ids)
    n_deferred = 0
    delivered = set()
    for job_id, ns in by_job.items():
        if job_id not in want:
            fails.add("note for unknown job %r: %s" % (job_id, h.format_note(ns[0])))
            continue
        terminal = [n for n in ns if h.is_terminal(n)]
        n_deferred += len(ns) - len(terminal)
        if len(terminal) != 1:
            fails.add("%s: %d terminal notes: %s" % (job_id, len(terminal), "; ".join(
                h.format_note(n) for n in terminal)))
        elif terminal[0].get("event") != "delivered":
            fails.add("%s: expected delivered, got %s" % (job_id, h.format_note(terminal[0])))
        else:
            delivered.add(job_id)
    missing = sorted(want - set(by_job))
    fails.check(not missing, "%d jobs have no note, e.g. %s" % (len(missing), missing[:5]))

    # A note Redis refused is a job that would be delivered again.
    for i, r in enumerate(runs):
        bad = [l for l in r.read_stderr().splitlines() if "event=note_failed" in l]
        fails.check(not bad, "run %d: %d notes refused by Redis, e.g. %s" % (
            i + 1, len(bad), bad[:1]))

    c = redis.client
    backlog = c.xlen(h.JOBS_STREAM)
    retry = c.zcard("herald:retry")
    pending = c.xpending(h.JOBS_STREAM, "herald")["pending"]
    fails.check(backlog == 0, "%d entries left in %s" % (backlog, h.JOBS_STREAM))
    fails.check(retry == 0, "%d jobs left in herald:retry" % retry)
    fails.check(pending == 0, "%d entries still pending in the group" % pending)

    seen = read_record(record)
    never = [j for j in sorted(delivered) if not seen.get(to_of[j])]
    fails.check(not never, "%d jobs noted delivered that the sink never accepted, e.g. %s" % (
        len(never), never[:5]))
    dups = sum(len(t) - 1 for t in seen.values() if len(t) > 1)
    dup_msgs = sum(1 for t in seen.values() if len(t) > 1)
    # Every second acceptance must be explained by a kill between the two:
    # the documented window (250 received, note not yet written, process
    # dies). Anything else is the engine sending twice on its own.
    slack = 50
    for rcpt, times in seen.items():
        times.sort()
        for a, b in zip(times, times[1:]):
            if not any(a - slack <= k <= b + slack for k in kill_times):
                fails.add("%s accepted twice (at %d and %d ms) with no kill in between" % (
                    rcpt, a, b))
    bound = KILLS * WORKERS * MAX_INFLIGHT
    fails.check(dups <= bound, "%d duplicate emails, more than the crash window allows (%d)" % (
        dups, bound))

    h.log("jobs=%d kills=%d (at notes %s) redis_restarts=1 deferred_notes=%d "
          "sink_accepted=%d duplicates=%d (in %d messages; bound %d) wall=%.1fs seed=%d" % (
              N_JOBS, KILLS, kill_log, n_deferred, sum(len(t) for t in seen.values()), dups, dup_msgs, bound,
              wall, seed))
    h.log("notes: %s" % h.summarize(notes))
    fails.raise_if_any("fault suite (seed %d)" % seed)


if __name__ == "__main__":
    h.main(run)
