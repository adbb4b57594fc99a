"""Before any connection: a second job with the same tenant + id gets one
`duplicate` note and is not sent; a hard bounce puts the recipient on the
tenant's suppression list, so a later job to it ends `suppressed` without
reaching the server; `herald suppress` lists, adds and removes entries (by the normalised
recipient key) and the global list applies to every tenant."""

import time

import harness as h


def job(job_id, to, tenant="acme"):
    return {"id": job_id, "tenant": tenant, "to": to, "subject": "Reminder",
            "text": "Tomorrow at 9:00"}


def cli(cfg, *args):
    r = h.herald_cli(["suppress", "-c", cfg] + list(args))
    if r.returncode != 0:
        raise h.TestFailure("herald suppress %s: exit %d: %s" % (" ".join(args), r.returncode,
                                                                 r.stderr))
    return r.stdout


def run():
    smtp = h.start_aiosmtpd()
    redis = h.start_redis()
    cfg = h.write_config(h.base_config(redis, smtp.port))
    fails = h.Failures()

    # Round 1: a job, its duplicate, the same id under another tenant, and a
    # hard bounce.
    h.enqueue(cfg, [job("appt-1", "pat@clinic.test"), job("appt-1", "pat@clinic.test"),
                    job("appt-1", "pat@clinic.test", tenant="beta"),
                    job("gone-1", "bounce@clinic.test")])
    out = cli(cfg, "add", "--global", "Blocked@Example.TEST")
    fails.check("added blocked@example.test" in out, "suppress add output: %r" % out)
    herald = h.run_herald(cfg)
    h.wait_notes(redis, 4, timeout=h.scaled(30), herald=herald)
    # Round 2: after the bounce, the same recipient again, another job of
    # beta's to the same address (its list is separate), and a globally
    # suppressed one.
    h.enqueue(cfg, [job("gone-2", "BOUNCE@clinic.test"), job("gone-3", "bounce@clinic.test",
                                                            tenant="beta"),
                    job("blocked-1", "blocked@example.test", tenant="beta")])
    h.wait_notes(redis, 7, timeout=h.scaled(30), herald=herald)
    time.sleep(1)
    herald.stop()

    notes = h.read_notes(redis)
    events = [(n.get("job"), n.get("tenant"), n.get("event")) for n in notes]
    want = sorted([("appt-1", "acme", "delivered"), ("appt-1", "acme", "duplicate"),
                   ("appt-1", "beta", "delivered"), ("gone-1", "acme", "bounced"),
                   ("gone-2", "acme", "suppressed"), ("gone-3", "beta", "bounced"),
                   ("blocked-1", "beta", "suppressed")])
    fails.check(sorted(events) == want, "notes:\n  got  %s\n  want %s" % (sorted(events), want))
    dup = [n for n in notes if n.get("event") == "duplicate"]
    fails.check(dup and "already has job id appt-1" in dup[0].get("reason", ""),
                "duplicate note should say why: %s" % (dup and h.format_note(dup[0])))
    bounced = [n for n in notes if n.get("job") == "gone-1"]
    fails.check(bounced and bounced[0].get("suppressed") == "added",
                "hard bounce note should say the recipient was suppressed")
    rcpts = [r for m in smtp.messages() for r in m["rcpt_tos"]] if smtp.count() else []
    fails.check(smtp.count() == 2, "server should hold the 2 delivered messages, has %d: %s"
                % (smtp.count(), rcpts))
    rows = [l.split("\t") for l in cli(cfg, "list", "--tenant", "acme").splitlines() if l]
    listed = [r[0] for r in rows]
    fails.check(listed == ["bounce@clinic.test"], "acme's list: %s" % listed)
    fails.check(rows and rows[0][2] == "bounce" and "5.1.1" in rows[0][3],
                "the bounce keeps its source and reply: %s" % rows)
    out = cli(cfg, "remove", "--tenant", "acme", "bounce@clinic.test")
    fails.check("removed" in out, "remove output: %r" % out)
    fails.check(cli(cfg, "list", "--tenant", "acme").strip() == "", "acme's list not empty")

    # The CLI stores the normalised recipient key (job.h to_key): ASCII case
    # folded in the local part, the domain in IDNA2008 A-labels, so two
    # spellings of one mailbox are one entry.
    key = "anna@xn--bcher-kva.example"
    out = cli(cfg, "add", "--tenant", "acme", "Anna@B\u00dcCHER.example")
    fails.check("added " + key in out, "suppress add IDN output: %r" % out)
    out = cli(cfg, "add", "--tenant", "acme", "anna@b\u00fccher.example")
    fails.check("already listed " + key in out, "second spelling should be listed: %r" % out)
    r = h.herald_cli(["suppress", "-c", cfg, "add", "--tenant", "acme", "x@\u2603.example"])
    fails.check(r.returncode == 2 and "IDNA2008" in r.stderr,
                "an IDNA2008-invalid domain should be refused: exit %d %r" % (r.returncode,
                                                                              r.stderr))
    # An entry in the older form (only ASCII lower-cased, U-label kept) is
    # removed along with the key.
    redis.client.sadd("herald:suppress:acme", "anna@b\u00fccher.example")
    out = cli(cfg, "remove", "--tenant", "acme", "ANNA@b\u00fccher.example")
    fails.check("removed " + key in out, "remove IDN output: %r" % out)
    left = [l.split("\t")[0] for l in cli(cfg, "list", "--tenant", "acme").splitlines() if l]
    fails.check(left == [], "acme's list after removing the IDN entry: %s" % left)

    # Reasons, check, CSV export and import.
    cli(cfg, "add", "--tenant", "acme", "--reason", "asked to stop, by phone", "Kim@Clinic.test")
    r = h.herald_cli(["suppress", "-c", cfg, "check", "--tenant", "acme", "kim@clinic.test",
                      "nobody@clinic.test"])
    fails.check(r.returncode == 1 and "kim@clinic.test: SUPPRESSED for the tenant" in r.stdout
                and "by operator: asked to stop, by phone" in r.stdout
                and "nobody@clinic.test: not suppressed for the tenant" in r.stdout,
                "check: %d %r" % (r.returncode, r.stdout))
    import csv
    import io
    out = cli(cfg, "export", "--tenant", "acme")
    rows = list(csv.DictReader(io.StringIO(out)))
    fails.check([(x["address"], x["source"], x["reason"]) for x in rows] ==
                [("kim@clinic.test", "operator", "asked to stop, by phone")]
                and int(rows[0]["added_at"]) > 0, "export: %r" % out)
    path = h.tmpdir().join("import.csv")
    with open(path, "w") as f:
        f.write('address,reason\nLee@Clinic.test,"unsubscribed, 2025"\nnot an address,x\n'
                'kim@clinic.test,again\n')
    r = h.herald_cli(["suppress", "-c", cfg, "import", "--tenant", "beta", path])
    fails.check(r.returncode == 1 and "imported 2 new" in r.stdout and "import.csv:3:1:" in r.stderr,
                "import: %d %r %r" % (r.returncode, r.stdout, r.stderr))
    rows = [l.split("\t") for l in cli(cfg, "list", "--tenant", "beta").splitlines() if l]
    got = sorted((x[0], x[2], x[3]) for x in rows if x[2] == "import")
    fails.check(got == [("kim@clinic.test", "import", "again"),
                        ("lee@clinic.test", "import", "unsubscribed, 2025")],
                "imported entries: %s" % got)
    fails.raise_if_any("duplicates and suppression")


if __name__ == "__main__":
    h.main(run)
