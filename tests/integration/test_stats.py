"""`herald stats` and the support-ticket history against a run of known
outcomes: per tenant, per outcome, per day and per recipient domain, with
bounce and deferral rates; counted by the note scripts (so a job deferred
twice and then given up at max_age counts 2 deferred + 1 bounced); `herald events --to`
prints a recipient's whole history with server, IPs, TLS and replies, and
--since/--until narrow it by time.
"""

import json
import time

import harness as h


def run():
    fails = h.Failures()
    smtp = h.start_aiosmtpd()
    redis = h.start_redis()
    cfg = h.base_config(redis, smtp.port,
                        delivery={"retry": ["1s"], "max_age": "3s", "timeouts": {"idle": "2s"}})
    path = h.write_config(cfg)
    jobs = []
    for i in range(6):
        jobs.append({"id": "ok%d" % i, "tenant": "acme", "to": "pat%d@clinic.test" % i,
                     "subject": "Reminder", "text": "9:00"})
    for i in range(3):
        jobs.append({"id": "ok-other%d" % i, "tenant": "acme", "to": "kim%d@Other.TEST" % i,
                     "subject": "Reminder", "text": "9:00"})
    for i in range(2):
        jobs.append({"id": "bad%d" % i, "tenant": "acme", "to": "bounce%d@clinic.test" % i,
                     "subject": "Reminder", "text": "9:00"})
    jobs.append({"id": "late", "tenant": "acme", "to": "defer-me@clinic.test",
                 "subject": "Reminder", "text": "9:00"})
    jobs.append({"id": "junk", "tenant": "acme", "to": "not an address",
                 "subject": "Reminder", "text": "9:00"})
    jobs.append({"id": "b1", "tenant": "beta", "to": "lee@clinic.test",
                 "subject": "Reminder", "text": "9:00"})
    t0 = int(time.time() * 1000)
    h.xadd_jobs(redis, jobs)
    herald = h.run_herald(path)
    ids = [j["id"] for j in jobs]
    h.wait_terminal(redis, ids, timeout=h.scaled(30), herald=herald)
    herald.stop()
    notes = h.read_notes(redis)
    n_deferred = sum(1 for n in notes if n.get("event") == "deferred")
    fails.check(n_deferred >= 2, "the defer-me job should be deferred at least twice: %d"
                % n_deferred)

    out = h.herald_cli(["stats", "-c", path, "--tenant", "acme", "--json"])
    fails.check(out.returncode == 0, "stats exit %d: %s" % (out.returncode, out.stderr))
    doc = json.loads(out.stdout)
    tot = doc["total"]
    want = {"delivered": 9, "bounced": 3, "expired": 0, "rejected": 1, "deferred": n_deferred}
    for ev, n in want.items():
        fails.check(tot.get(ev) == n, "acme month %s: %s, want %d" % (ev, tot.get(ev), n))
    fails.check(abs(tot["bounce_rate"] - 3 / 12.0) < 1e-6, "bounce rate 3/12: %s" % tot)
    fails.check(abs(tot["deferral_rate"] - n_deferred / float(12 + n_deferred)) < 1e-6,
                "deferral rate: %s" % tot)
    today = time.strftime("%Y-%m-%d", time.gmtime(t0 / 1000))
    day = doc["days"].get(today, {})
    fails.check(day.get("delivered") == 9 and day.get("bounced") == 3,
                "today's row (%s): %s" % (today, day))
    doms = doc["domains"]
    fails.check(doms.get("other.test", {}).get("delivered") == 3,
                "other.test (lower-cased) should have 3 delivered: %s" % doms.get("other.test"))
    fails.check(doms.get("clinic.test", {}).get("delivered") == 6
                and doms.get("clinic.test", {}).get("bounced") == 3,
                "clinic.test: %s" % doms.get("clinic.test"))
    beta = json.loads(h.herald_cli(["stats", "-c", path, "--tenant", "beta", "--json"]).stdout)
    fails.check(beta["total"]["delivered"] == 1, "beta: %s" % beta["total"])
    other_month = json.loads(h.herald_cli(["stats", "-c", path, "--tenant", "acme", "--month",
                                           "2001-01", "--json"]).stdout)
    fails.check(other_month["total"]["delivered"] == 0, "another month is empty: %s"
                % other_month["total"])
    text = h.herald_cli(["stats", "-c", path, "--tenant", "acme"])
    fails.check(text.returncode == 0 and "clinic.test" in text.stdout and today in text.stdout,
                "text stats:\n%s" % text.stdout)
    bad = h.herald_cli(["stats", "-c", path, "--tenant", "acme", "--month", "2026-13"])
    fails.check(bad.returncode == 2, "a bad --month should exit 2, got %d" % bad.returncode)

    # A recipient's history for a support ticket.
    hist = h.herald_cli(["events", "-c", path, "--tenant", "acme", "--to", "DEFER-ME@clinic.test"])
    fails.check(hist.returncode == 0, "events --to exit %d" % hist.returncode)
    blocks = [b for b in hist.stdout.split("\n\n") if b.strip()]
    fails.check(len(blocks) == n_deferred + 1,
                "history should show %d notes, shows %d:\n%s" % (n_deferred + 1, len(blocks),
                                                                hist.stdout))
    fails.check("domain clinic.test" in hist.stdout and "451" in hist.stdout
                and "server     " in hist.stdout and "bounced" in hist.stdout,
                "history should show domain, server and replies:\n%s" % hist.stdout)
    h.log("history:\n" + hist.stdout)
    mids = {n.get("message_id") for n in notes if n.get("job") == "late"}
    fails.check(len(mids) == 1 and None not in mids,
                "every attempt of a message keeps its first Message-ID: %s" % mids)
    future = h.herald_cli(["events", "-c", path, "--since", str(int(time.time() * 1000) + 60000)])
    fails.check(future.returncode == 0 and len(future.stdout.strip().splitlines()) <= 1,
                "--since in the future shows nothing:\n%s" % future.stdout)
    window = h.herald_cli(["events", "-c", path, "--since", "1h", "--until",
                           str(int(time.time() * 1000) + 1000), "--json"])
    fails.check(len(window.stdout.strip().splitlines()) == len(notes),
                "--since 1h shows all %d notes, got %d" % (len(notes),
                                                        len(window.stdout.strip().splitlines())))
    past = h.herald_cli(["events", "-c", path, "--until", str(t0 - 1000), "--json"])
    fails.check(past.stdout.strip() == "", "--until before the run shows nothing:\n%s" % past.stdout)
    fails.raise_if_any("herald stats and history")


if __name__ == "__main__":
    h.main(run)
