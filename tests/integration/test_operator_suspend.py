"""herald suspend / resume: an operator stops sending for a recipient
domain (or tenant, provider, site, egress IP) with a reason, across the
running engines, and starts it again.
  - suspended domain: its job is parked with a `deferred` note (category
    suspended, the reason) and nothing reaches the receiver, while another
    domain's job is delivered; `suspend --list` shows it;
  - after `resume` the parked job is delivered (suspensions re-check every
    30 s);
  - a tenant suspended `--for 3s` ends by itself: its job goes after it;
  - bad usage (no reason, two targets) exits 2."""

import time

import harness as h


def job(i, to, tenant="acme"):
    return {"id": i, "tenant": tenant, "to": to, "subject": "S", "text": "t"}


def received(smtp):
    return sorted(r for m in smtp.messages() for r in m["rcpt_tos"])


def run():
    fails = h.Failures()
    smtp = h.start_aiosmtpd()
    redis = h.start_redis()
    path = h.write_config(h.base_config(redis, smtp.port))
    herald = h.run_herald(path)
    r = h.herald_cli(["suspend", "-c", path, "--domain", "paused.test", "--reason",
                      "the clinic asked us to wait"])
    fails.check(r.returncode == 0, "suspend: %d %r" % (r.returncode, r.stderr))
    r = h.herald_cli(["suspend", "-c", path, "--list"])
    fails.check("domain" in r.stdout and "paused.test" in r.stdout and "the clinic asked"
                in r.stdout, "suspend --list: %r" % r.stdout)
    r = h.herald_cli(["status", "-c", path])
    fails.check("suspended by an operator" in r.stdout and "paused.test" in r.stdout,
                "herald status shows it: %r" % r.stdout[:400])
    time.sleep(2)  # engines read it within a second
    h.xadd_jobs(redis, [job("p1", "pat@paused.test"), job("o1", "pat@open.test")])
    h.wait_terminal(redis, ["o1"], timeout=h.scaled(20), herald=herald)
    deadline = time.monotonic() + h.scaled(10)
    parked = []
    while time.monotonic() < deadline and not parked:
        parked = [n for n in h.read_notes(redis) if n.get("job") == "p1"]
        time.sleep(0.2)
    n = parked[0] if parked else {}
    fails.check(n.get("event") == "deferred" and n.get("category") == "suspended"
                and "domain paused.test suspended by an operator: the clinic asked us to wait"
                in n.get("reason", ""), "p1 parked with the reason: %s" % h.format_note(n))
    fails.check(received(smtp) == ["pat@open.test"], "only open.test delivered: %s"
                % received(smtp))

    r = h.herald_cli(["resume", "-c", path, "--domain", "paused.test"])
    fails.check(r.returncode == 0 and "resumed" in r.stdout, "resume: %r" % r.stdout)
    notes = h.wait_terminal(redis, ["p1"], timeout=h.scaled(60), herald=herald)
    fails.check([x for x in notes if x.get("job") == "p1"][-1].get("event") == "delivered",
                "p1 delivered after resume")

    r = h.herald_cli(["suspend", "-c", path, "--tenant", "beta", "--reason", "billing",
                      "--for", "3s"])
    fails.check(r.returncode == 0 and "expires" in r.stdout, "suspend --for: %r" % r.stdout)
    time.sleep(1.5)
    t0 = time.monotonic()
    h.xadd_jobs(redis, [job("b1", "pat@beta-clinic.test", tenant="beta")])
    notes = h.wait_terminal(redis, ["b1"], timeout=h.scaled(40), herald=herald)
    b = [x for x in notes if x.get("job") == "b1"]
    fails.check(b and b[-1].get("event") == "delivered" and
                any(x.get("category") == "suspended" for x in b),
                "b1 parked, then delivered once the suspension expired: %s"
                % [h.format_note(x) for x in b])
    h.log("b1 delivered %.1f s after enqueue" % (time.monotonic() - t0))

    for bad in (["suspend", "--domain", "x.test"],
                ["suspend", "--domain", "x.test", "--tenant", "acme", "--reason", "r"]):
        r = h.herald_cli(bad[:1] + ["-c", path] + bad[1:])
        fails.check(r.returncode == 2, "%s: exit %d, want 2" % (bad, r.returncode))
    herald.stop()
    fails.raise_if_any("operator suspensions")


if __name__ == "__main__":
    h.main(run)
