"""Appointments move and get cancelled: a `cancel` entry or a job with
`replaces` ends the earlier job with a `cancelled` note when it has not been
sent — scheduled, waiting for a retry, or not even read yet — and the control
entry's note says what happened (`result`): cancelled, already-delivered,
not-seen. Nothing cancelled reaches the server. `herald cancel --tenant T
--id ID --wait S` adds the control entry and prints that result."""

import time

import harness as h


def job(job_id, to, **kw):
    j = {"id": job_id, "tenant": "acme", "to": to, "subject": "Reminder",
         "text": "Your appointment %s" % job_id}
    j.update(kw)
    return j


def cancel(ctrl_id, target):
    return {"id": ctrl_id, "tenant": "acme", "cancel": target}


def run():
    smtp = h.start_aiosmtpd()
    redis = h.start_redis()
    cfg = h.write_config(h.base_config(redis, smtp.port, delivery={"retry": ["1m"],
                                                                   "max_age": "1h"}))
    fails = h.Failures()
    later = str(int(time.time() * 1000) + 120000)

    # Round 1: a scheduled job, a job that is delivered now, a job that will
    # be greylisted into the retry set, a job that another one replaces, and
    # a cancel that arrives before its job.
    h.xadd_jobs(redis, [job("sched-1", "pat1@clinic.test", send_at=later),
                        job("now-1", "pat2@clinic.test"),
                        job("grey-1", "defer3@clinic.test"),
                        job("moved-1", "pat4@clinic.test", send_at=later),
                        cancel("c-early", "early-1")])
    herald = h.run_herald(cfg)
    h.wait_terminal(redis, ["now-1", "c-early"], timeout=30, herald=herald)
    deadline = time.monotonic() + h.scaled(20)
    while time.monotonic() < deadline:
        if any(n.get("job") == "grey-1" and n.get("event") == "deferred"
               for n in h.read_notes(redis)):
            break
        time.sleep(0.2)
    # Round 2: the cancels, the replacement, and the job cancelled in advance.
    h.xadd_jobs(redis, [cancel("c-sched", "sched-1"), cancel("c-now", "now-1"),
                        cancel("c-grey", "grey-1"),
                        job("moved-2", "pat4@clinic.test", replaces="moved-1"),
                        job("early-1", "pat5@clinic.test")])
    notes = h.wait_terminal(redis, ["sched-1", "c-sched", "c-now", "grey-1", "c-grey",
                                    "moved-1", "moved-2", "early-1"], timeout=30, herald=herald)
    # The CLI front: a scheduled job cancelled by `herald cancel`.
    h.xadd_jobs(redis, [job("sched-cli", "pat6@clinic.test", send_at=later)])
    time.sleep(1)
    r = h.herald_cli(["cancel", "-c", cfg, "--tenant", "acme", "--id", "sched-cli",
                      "--wait", "20"])
    fails.check(r.returncode == 0 and "result: cancelled" in r.stdout,
                "herald cancel --wait: exit %d %r %r" % (r.returncode, r.stdout, r.stderr))
    r = h.herald_cli(["cancel", "-c", cfg, "--tenant", "nobody", "--id", "x"])
    fails.check(r.returncode == 2 and "nobody" in r.stderr,
                "herald cancel for an unknown tenant: exit %d %r" % (r.returncode, r.stderr))
    # Round 3: scheduled copies claim their id when they are scheduled. The
    # platform retries its XADD of a scheduled job, then cancels it: one copy
    # is a duplicate at once, the other ends cancelled, nothing is sent when
    # send_at comes (before, the untracked copy was delivered then). A
    # scheduled job that replaces another cancels it now, not at its own
    # send_at.
    soon = str(int(time.time() * 1000) + 4000)
    h.xadd_jobs(redis, [job("twice-1", "pat7@clinic.test", send_at=soon),
                        job("twice-1", "pat7@clinic.test", send_at=soon)])
    h.wait_terminal(redis, ["twice-1"], timeout=20, herald=herald)  # the duplicate
    h.xadd_jobs(redis, [cancel("c-twice", "twice-1"),
                        job("old-3", "pat8@clinic.test", send_at=soon)])
    time.sleep(1)
    h.xadd_jobs(redis, [job("new-3", "pat9@clinic.test", replaces="old-3",
                            send_at=str(int(time.time() * 1000) + 30000))])
    t0 = time.monotonic()
    h.wait_terminal(redis, ["c-twice", "old-3"], timeout=20, herald=herald)
    fails.check(time.monotonic() - t0 < 3.5, "the scheduled replacement cancels old-3 at once")
    time.sleep(6)  # past `soon`: nothing of round 3 may arrive
    time.sleep(1)
    herald.stop()
    notes = h.read_notes(redis)
    by = h.notes_by_job(notes)

    def terminal(job_id):
        t = [n for n in by.get(job_id, []) if h.is_terminal(n)]
        fails.check(len(t) == 1, "%s: want exactly one terminal note, got %s"
                    % (job_id, [h.format_note(n) for n in by.get(job_id, [])]))
        return t[0] if t else {}

    evs = sorted(n.get("event") for n in by.get("twice-1", []))
    fails.check(evs == ["cancelled", "duplicate"],
                "twice-1: one duplicate, one cancelled, never delivered: %s" % evs)
    for jid in ("sched-1", "grey-1", "moved-1", "early-1", "sched-cli", "old-3"):
        fails.check(terminal(jid).get("event") == "cancelled",
                    "%s should end cancelled: %s" % (jid, h.format_note(terminal(jid))))
    fails.check(terminal("now-1").get("event") == "delivered", "now-1 should be delivered")
    fails.check(terminal("moved-2").get("event") == "delivered", "moved-2 should be delivered")
    fails.check(terminal("moved-2").get("replaced") == "cancelled",
                "moved-2's note should say it cancelled moved-1: %s"
                % h.format_note(terminal("moved-2")))
    want = {"c-sched": "cancelled", "c-now": "already-delivered", "c-grey": "cancelled",
            "c-early": "not-seen"}
    for ctrl, result in want.items():
        n = terminal(ctrl)
        fails.check(n.get("event") == "cancelled" and n.get("result") == result,
                    "%s: want result=%s, got %s" % (ctrl, result, h.format_note(n)))
    fails.check("cancelled by entry" in terminal("sched-1").get("reason", ""),
                "sched-1's note should name the cancel entry")
    got = sorted(r for m in smtp.messages() for r in m["rcpt_tos"])
    fails.check(got == ["pat2@clinic.test", "pat4@clinic.test"],
                "only now-1 and moved-2 may reach the server, got %s" % got)
    left = [redis.client.hget(k, "id") for k in redis.client.zrange("herald:retry", 0, -1)]
    left = [x.decode() if isinstance(x, bytes) else x for x in left]
    fails.check(left == ["new-3"], "only new-3 (due later) should be in the retry set: %s" % left)
    fails.raise_if_any("cancel and replaces")


if __name__ == "__main__":
    h.main(run)
