"""Crash safety: 2,000 jobs against herald-sink; herald is SIGKILLed twice
mid-run and restarted with the same config. In the end every job has exactly
one terminal note (the note and the XACK are one atomic write; reclaimed
jobs are not noted twice). Duplicate *emails* from the crash window are
allowed and reported, not failed."""

import time

import harness as h

N_JOBS = 2000


def kill_after(redis, herald, n_notes, label):
    """Wait for n_notes notes, then SIGKILL herald. Polls fast so the kill
    lands mid-run rather than after the queue drained."""
    deadline = time.monotonic() + h.scaled(120)
    while redis.client.xlen(h.EVENTS_STREAM) < n_notes:
        herald.check()
        if time.monotonic() > deadline:
            raise h.TestFailure("%s: only %d notes after %.0fs, waiting for %d" % (
                label, redis.client.xlen(h.EVENTS_STREAM), h.scaled(120), n_notes))
        time.sleep(0.005)
    herald.kill()
    seen = redis.client.xlen(h.EVENTS_STREAM)
    h.log("%s: SIGKILLed herald at %d notes (target %d)" % (label, seen, n_notes))
    if seen >= N_JOBS:
        h.log("warning: the queue drained before the kill; the crash window was not exercised")


def run():
    sink = h.start_sink(["--latency-ms", "2"])
    redis = h.start_redis()
    cfg = h.write_config(h.base_config(redis, sink.port, providers={
        "default": {"connections": 4, "messages_per_connection": 100}}))
    ids = ["crash-%04d" % i for i in range(N_JOBS)]
    jobs = [{"id": job_id, "tenant": "acme" if i % 2 else "beta",
             "to": "client%04d@vet%d.test" % (i, i % 5), "ref": "appt-%d" % i,
             "subject": "Reminder: appointment %d" % i,
             "text": "Your appointment is on Tuesday.\n.\nReply to reschedule."}
            for i, job_id in enumerate(ids)]
    h.enqueue(cfg, jobs)

    kill_after(redis, h.run_herald(cfg), N_JOBS // 5, "first run")
    kill_after(redis, h.run_herald(cfg), N_JOBS // 2, "second run")
    final = h.run_herald(cfg)
    # Jobs the killed consumers held are reclaimed after claim_idle (2s).
    h.wait_terminal(redis, ids, timeout=240, herald=final)
    time.sleep(3)  # a double note would show up here
    final.stop()

    notes = h.read_notes(redis)
    by_job = h.notes_by_job(notes)
    fails = h.Failures()
    want = set(ids)
    n_deferred = 0
    for job_id, ns in by_job.items():
        if job_id not in want:
            fails.add("note for unknown job %r: %s" % (job_id, h.format_note(ns[0])))
            continue
        terminal = [n for n in ns if h.is_terminal(n)]
        n_deferred += len(ns) - len(terminal)
        if len(terminal) != 1:
            fails.add("%s: %d terminal notes: %s" % (job_id, len(terminal), "; ".join(
                h.format_note(n) for n in terminal)))
    missing = sorted(want - set(by_job))
    fails.check(not missing, "%d jobs have no note, e.g. %s" % (len(missing), missing[:5]))
    fails.check(len(notes) == N_JOBS + n_deferred,
                "expected %d notes (%d terminal + %d deferred), got %d" % (
                    N_JOBS + n_deferred, N_JOBS, n_deferred, len(notes)))
    fails.raise_if_any("exactly one terminal note per job across two crashes")

    sink.stop()
    seen = sink.messages_seen()
    if seen is None:
        h.log("herald-sink printed no message count; duplicates unknown")
    else:
        h.log("herald-sink accepted %d messages: %d beyond %d (duplicates from the crash "
              "window)" % (seen, seen - N_JOBS, N_JOBS))
    h.log("notes: %s" % h.summarize(notes))


if __name__ == "__main__":
    h.main(run)
