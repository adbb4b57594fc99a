"""herald queue: list, show and act on what waits, across processes.

A receiver defers everything to defer-*@ (451), herald retries after an
hour; one job is scheduled an hour ahead. Then:
  - list shows each with its state (retrying, scheduled), --state, --domain
    and --json filter; show tells one job's state, next attempt and notes;
  - hold keeps a job out of delivery (a retry of everything leaves it
    alone), release brings it back;
  - retry brings the deferred jobs of a domain forward now: attempt 2
    happens within seconds instead of in an hour;
  - bounce ends a job with a `bounced` note (category operator, the
    reason given); cancel ends the scheduled one `cancelled`;
  - an action without a filter is refused (exit 2)."""

import json
import time

import harness as h


def job(i, to, **kw):
    j = {"id": i, "tenant": "acme", "to": to, "subject": "S", "text": "t"}
    j.update(kw)
    return j


def q(path, *args):
    return h.herald_cli(["queue"] + list(args) + ["-c", path])


def attempts(redis, jid):
    return [n for n in h.read_notes(redis) if n.get("job") == jid and n.get("event") == "deferred"]


def run():
    fails = h.Failures()
    smtp = h.start_aiosmtpd()
    redis = h.start_redis()
    cfg = h.base_config(redis, smtp.port)
    cfg["delivery"] = {"retry": ["1h"], "max_age": "2d", "timeouts": {"idle": "2s"}}
    path = h.write_config(cfg)
    herald = h.run_herald(path)
    later = str(int(time.time() * 1000) + 3600 * 1000)
    h.xadd_jobs(redis, [job("d1", "defer-1@a.test"), job("d2", "defer-2@a.test"),
                        job("d3", "defer-3@b.test"), job("s1", "pat@c.test", send_at=later)])
    deadline = time.monotonic() + h.scaled(20)
    while time.monotonic() < deadline and not all(attempts(redis, j) for j in ("d1", "d2", "d3")):
        time.sleep(0.2)
    time.sleep(1)

    r = q(path, "list")
    fails.check(r.returncode == 0, "list: %d %s" % (r.returncode, r.stderr))
    lines = {l.split()[2]: l.split()[0] for l in r.stdout.splitlines() if l.strip()}
    fails.check(lines == {"d1": "retrying", "d2": "retrying", "d3": "retrying", "s1": "scheduled"},
                "list states: %s" % lines)
    r = q(path, "list", "--state", "scheduled", "--json")
    rows = [json.loads(l) for l in r.stdout.splitlines() if l.strip()]
    fails.check([x.get("id") for x in rows] == ["s1"] and rows[0].get("state") == "scheduled",
                "list --state scheduled --json: %s" % rows)
    r = q(path, "list", "--domain", "b.test")
    fails.check([l.split()[2] for l in r.stdout.splitlines() if l.strip()] == ["d3"],
                "list --domain b.test: %r" % r.stdout)
    r = q(path, "list", "--provider", "default")
    fails.check(sorted(l.split()[2] for l in r.stdout.splitlines() if l.strip())
                == ["d1", "d2", "d3"], "list --provider: the routed jobs only: %r" % r.stdout)
    r = q(path, "show", "--tenant", "acme", "--id", "d1")
    fails.check(r.returncode == 0 and "state      retry:" in r.stdout and "next       attempt at"
                in r.stdout and "deferred" in r.stdout, "show d1:\n%s" % r.stdout)

    r = q(path, "hold", "--id", "d2", "--reason", "asked by the clinic")
    fails.check(r.returncode == 0 and "hold: 1 job" in r.stdout, "hold: %r" % r.stdout)
    r = q(path, "retry", "--domain", "a.test")
    fails.check(r.returncode == 0 and "retry: 1 job" in r.stdout, "retry a.test: %r" % r.stdout)
    deadline = time.monotonic() + h.scaled(15)
    while time.monotonic() < deadline and len(attempts(redis, "d1")) < 2:
        time.sleep(0.2)
    fails.check(len(attempts(redis, "d1")) == 2 and attempts(redis, "d1")[-1].get("attempt") == "2",
                "retry brings d1's attempt 2 now: %s" % [h.format_note(n) for n in attempts(redis, "d1")])
    fails.check(len(attempts(redis, "d2")) == 1, "held d2 is not attempted again")
    r = q(path, "list", "--state", "held")
    fails.check([l.split()[2] for l in r.stdout.splitlines() if l.strip()] == ["d2"],
                "list --state held: %r" % r.stdout)
    r = q(path, "release", "--id", "d2")
    fails.check("release: 1 job" in r.stdout, "release: %r" % r.stdout)
    deadline = time.monotonic() + h.scaled(15)
    while time.monotonic() < deadline and len(attempts(redis, "d2")) < 2:
        time.sleep(0.2)
    fails.check(len(attempts(redis, "d2")) == 2, "released d2 goes again")

    r = q(path, "bounce", "--id", "d3", "--reason", "address confirmed dead")
    fails.check("bounce: 1 job" in r.stdout, "bounce: %r" % r.stdout)
    r = q(path, "cancel", "--id", "s1")
    fails.check("cancel: 1 job" in r.stdout, "cancel: %r" % r.stdout)
    notes = h.wait_terminal(redis, ["d3", "s1"], timeout=h.scaled(20), herald=herald)
    last = {n["job"]: n for n in notes}
    n = last.get("d3", {})
    fails.check(n.get("event") == "bounced" and n.get("category") == "operator"
                and "address confirmed dead" in n.get("reason", ""),
                "d3 bounced by the operator: %s" % h.format_note(n))
    fails.check(last.get("s1", {}).get("event") == "cancelled", "s1 cancelled: %s"
                % h.format_note(last.get("s1", {})))
    r = q(path, "retry")
    fails.check(r.returncode == 2, "an action without a filter is refused: %d" % r.returncode)
    herald.stop()
    fails.raise_if_any("queue tools")


if __name__ == "__main__":
    h.main(run)
