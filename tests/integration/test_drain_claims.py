"""A draining process keeps its claims fresh.

shutdown_grace (10 s) is longer than claim_idle (2 s). Process A holds two
jobs whose receiver answers after 6 s when it is told to stop; process B,
another consumer of the same group, runs beside it. Before, A stopped
refreshing its claims while draining, B's XAUTOCLAIM took the jobs after
2 s and sent them again: the receiver got each twice. Checked: each
message arrives exactly once and each job has one delivered note."""

import time

import harness as h


def run():
    fails = h.Failures()
    smtp = h.start_aiosmtpd(slow_seconds=6.0)
    redis = h.start_redis()

    def cfg(consumer):
        c = h.base_config(redis, smtp.port)
        c["engine"].update({"consumer": consumer, "shutdown_grace": "10s", "workers": 1})
        c["delivery"] = {"retry": ["1s"], "max_age": "1h", "timeouts": {"idle": "2s"}}
        return h.write_config(c, "%s.yaml" % consumer)

    a = h.run_herald(cfg("node-a"))
    ids = ["d%d" % i for i in range(2)]
    h.xadd_jobs(redis, [{"id": j, "tenant": "acme", "to": "slow-%s@clinic.test" % j,
                         "subject": "Reminder", "text": "9:00"} for j in ids])
    time.sleep(1.5)  # A has both at the receiver
    b = h.run_herald(cfg("node-b"))
    a.stop(timeout=h.scaled(30))
    h.wait_terminal(redis, ids, timeout=h.scaled(30), herald=b)
    time.sleep(h.scaled(8))  # long enough for B to have sent them again
    got = {}
    for m in smtp.messages():
        for r in m["rcpt_tos"]:
            got[r] = got.get(r, 0) + 1
    counts = [got.get("slow-%s@clinic.test" % j, 0) for j in ids]
    h.log("receiver counts per job: %s" % counts)
    fails.check(counts == [1, 1], "each message should arrive once: %s" % counts)
    notes = h.notes_by_job(h.read_notes(redis))
    for j in ids:
        ev = [n.get("event") for n in notes.get(j, [])]
        fails.check(ev.count("delivered") == 1, "%s notes: %s" % (j, ev))
    b.stop()
    fails.raise_if_any("claims during drain")


if __name__ == "__main__":
    h.main(run)
