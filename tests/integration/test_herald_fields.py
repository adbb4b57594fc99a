"""Fields herald writes on its own copies of a job (attempt, enqueued_at,
admitted, counted, throttled, message_id) cannot be set by a producer.

Before, `counted=1` skipped recipient caps and the tenant rate, `attempt=N`
and `admitted=` skipped idempotency and `replaces`, and `enqueued_at=0`
turned off max_age. Now an entry that carries one is taken only when the
job's state says herald's mover put exactly that entry back:
  - a recipient capped at 1/h gets its first reminder; a second one with
    `counted=1` is `rejected` naming the field, not delivered;
  - each herald field on a fresh entry -> `rejected`, field named;
  - a forged field on a scheduled job is refused at once, not laundered
    through the retry set;
  - herald's own copies still go: a scheduled job (send_at 2 s ahead) and a
    job deferred once (451, then accepted) are delivered, attempt 2 for
    the deferred one;
  - `herald enqueue --field counted=1` and a JSON line with `attempt` are
    refused by the CLI, exit 2 / a bad line."""

import json
import time

import harness as h

HERALD_FIELDS = ["attempt", "enqueued_at", "admitted", "counted", "throttled", "message_id"]
VALUES = {"attempt": "3", "enqueued_at": "0", "admitted": "1-0", "counted": "1",
          "throttled": "1", "message_id": "x@acme.test"}


def job(job_id, to, **more):
    j = {"id": job_id, "tenant": "acme", "to": to, "subject": "Reminder", "text": "9:00"}
    j.update(more)
    return j


def run():
    fails = h.Failures()
    # The first attempt to flaky@ is deferred, the next accepted.
    smtp = h.start_aiosmtpd(rules=[{"prefix": "flaky", "reply": "451 4.7.1 try later",
                                    "times": 1}])
    redis = h.start_redis()
    cfg = h.base_config(redis, smtp.port)
    cfg["recipients"] = {"limit": ["1/h"]}
    cfg["delivery"] = {"retry": ["1s"], "max_age": "2d", "timeouts": {"idle": "2s"}}
    path = h.write_config(cfg)

    now_ms = int(time.time() * 1000)
    jobs = [job("first", "capped@clinic.test"),
            job("forged-counted", "capped@clinic.test", counted="1"),
            job("forged-scheduled", "sched2@clinic.test", counted="1",
                send_at=str(now_ms + 2000)),
            job("scheduled", "sched@clinic.test", send_at=str(now_ms + 2000)),
            job("deferred", "flaky@clinic.test")]
    for f in HERALD_FIELDS:
        jobs.append(job("forged-" + f.replace("_", "-"), "%s@clinic.test" % f.replace("_", "-"),
                        **{f: VALUES[f]}))
    # `first` must be counted before `forged-counted` is read.
    h.xadd_jobs(redis, jobs[:1])
    herald = h.run_herald(path)
    h.wait_terminal(redis, ["first"], timeout=30, herald=herald)
    h.xadd_jobs(redis, jobs[1:])
    notes = h.wait_terminal(redis, [j["id"] for j in jobs], timeout=60, herald=herald)
    herald.stop()
    last = {}
    for n in notes:
        last[n["job"]] = n
    for jid in ("first", "scheduled", "deferred"):
        n = last.get(jid, {})
        fails.check(n.get("event") == "delivered", "%s: delivered: %s" % (jid, h.format_note(n)))
    fails.check(last.get("deferred", {}).get("attempt") == "2",
                "the deferred job's own retry carries attempt 2: %s"
                % h.format_note(last.get("deferred", {})))
    forged = ["forged-counted", "forged-scheduled"] + [
        "forged-" + f.replace("_", "-") for f in HERALD_FIELDS]
    for jid in forged:
        n = last.get(jid, {})
        want = "counted" if jid in ("forged-counted", "forged-scheduled") else \
            HERALD_FIELDS[[("forged-" + f.replace("_", "-")) for f in HERALD_FIELDS].index(jid)]
        fails.check(n.get("event") == "rejected" and n.get("field") == want
                    and "producer cannot set it" in n.get("reason", ""),
                    "%s: rejected, field %s: %s" % (jid, want, h.format_note(n)))
    got = sorted(r for m in smtp.messages() for r in m["rcpt_tos"])
    want = sorted(["capped@clinic.test", "sched@clinic.test", "flaky@clinic.test"])
    fails.check(got == want, "only herald's own jobs reach the receiver: %s" % got)

    r = h.herald_cli(["enqueue", "-c", path, "--tenant", "acme", "--to", "a@clinic.test",
                      "--subject", "s", "--text", "t", "--field", "counted=1"])
    fails.check(r.returncode == 2 and "counted" in r.stderr,
                "enqueue --field counted=1: exit 2 naming the field: %d %r"
                % (r.returncode, r.stderr))
    line = json.dumps({"tenant": "acme", "to": "b@clinic.test", "subject": "s", "text": "t",
                       "attempt": "2"})
    r = h.herald_cli(["enqueue", "-c", path, "--jsonl"], input=line + "\n")
    fails.check(r.returncode == 1 and "enqueued 0" in r.stdout and "herald writes" in r.stderr,
                "enqueue --jsonl with attempt: a bad line: %d %r %r"
                % (r.returncode, r.stdout, r.stderr))
    fails.raise_if_any("herald fields")


if __name__ == "__main__":
    h.main(run)
