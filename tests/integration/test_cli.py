"""The command line contract: check-config exit codes and error format
(unix:// Redis URLs refused by name),
--help everywhere, usage errors, `enqueue` with flags, `events --json`."""

import json
import re

import harness as h

SUBCOMMANDS = ["run", "check-config", "enqueue", "events"]


def show(cp):
    return "exit %d\nstdout: %s\nstderr: %s" % (cp.returncode, cp.stdout[-1500:],
                                                 cp.stderr[-1500:])


def run():
    redis = h.start_redis()
    cfg = h.write_config(h.base_config(redis, 2525))
    fails = h.Failures()

    cp = h.herald_cli(["check-config", "-c", cfg])
    fails.check(cp.returncode == 0, "check-config on a good config should exit 0: " + show(cp))

    bad = h.write_config(
        "redis:\n  url: %s\nengine:\n  workers: 2\n  wokers: 3\ntenants:\n"
        "  acme: {from: reminders@acme.test}\n" % redis.url, name="bad.yaml")
    cp = h.herald_cli(["check-config", "-c", bad])
    fails.check(cp.returncode == 2, "check-config on an unknown key should exit 2: " + show(cp))
    m = re.search(r"^(.+):(\d+):(\d+): unknown key", cp.stderr, re.M)
    fails.check(m is not None, "stderr should say FILE:LINE:COL: unknown key ...: " + show(cp))
    if m:
        fails.check(m.group(1).endswith("bad.yaml") and m.group(2) == "5",
                    "the error should point at bad.yaml line 5 (the 'wokers' key): %r"
                    % m.group(0))

    # unix:// is refused by name at load, by check-config and by run alike
    # (it used to pass check-config and fail at start without a position).
    unix = h.write_config("tenants:\n  acme: {from: reminders@acme.test}\nredis:\n"
                          "  url: unix:///run/redis/redis.sock\n", name="unix.yaml")
    for cmd in ("check-config", "run"):
        cp = h.herald_cli([cmd, "-c", unix], timeout=20)
        fails.check(cp.returncode == 2 and
                    "%s:4:8: unix:// Redis URLs are not supported; use redis://host:port" % unix
                    in cp.stderr, "%s with a unix:// redis.url: want exit 2 and FILE:4:8: "
                    "unix:// Redis URLs are not supported...: %s" % (cmd, show(cp)))

    cp = h.herald_cli(["check-config", "-c", h.tmpdir().join("does-not-exist.yaml")])
    fails.check(cp.returncode in (1, 2) and cp.stderr.strip(),
                "check-config on a missing file should fail with a message: " + show(cp))

    for args in [["--help"]] + [[sub, "--help"] for sub in SUBCOMMANDS]:
        cp = h.herald_cli(args, timeout=20)
        fails.check(cp.returncode == 0 and (cp.stdout + cp.stderr).strip(),
                    "herald %s should print help and exit 0: %s" % (" ".join(args), show(cp)))

    cp = h.herald_cli(["no-such-subcommand"])
    fails.check(cp.returncode == 2, "an unknown subcommand should exit 2: " + show(cp))
    cp = h.herald_cli([])
    fails.check(cp.returncode == 2, "no subcommand should exit 2: " + show(cp))

    cp = h.herald_cli(["enqueue", "-c", cfg, "--tenant", "acme", "--to", "ann@example.test",
                       "--subject", "Reminder: Friday 10:00", "--text", "See you Friday.",
                       "--html", "<p>See you Friday.</p>", "--ref", "client-42",
                       "--id", "appt-42", "--field", "unsubscribe=https://acme.test/u?c=42"])
    sid = cp.stdout.strip()
    if cp.returncode != 0 or not re.fullmatch(r"\d+-\d+", sid):
        fails.add("enqueue with flags should print the new stream id: " + show(cp))
    else:
        entries = redis.client.xrange(h.JOBS_STREAM, min=sid, max=sid)
        fields = entries[0][1] if entries else {}
        want = {"tenant": "acme", "to": "ann@example.test", "subject": "Reminder: Friday 10:00",
                "text": "See you Friday.", "html": "<p>See you Friday.</p>",
                "ref": "client-42", "id": "appt-42",
                "unsubscribe": "https://acme.test/u?c=42"}
        for k, v in want.items():
            fails.check(fields.get(k) == v, "enqueued entry %s: %s=%r, expected %r" % (
                sid, k, fields.get(k), v))

    cp = h.herald_cli(["enqueue", "-c", cfg, "--tenant", "acme"])
    fails.check(cp.returncode == 2, "enqueue with flags but no --to should exit 2: " + show(cp))

    written = [
        {"event": "delivered", "job": "j1", "tenant": "acme", "ref": "r1",
         "to": "a@example.test", "attempt": "1", "code": "250", "enhanced": "2.0.0",
         "reply": "2.0.0 Ok: queued as ABC", "message_id": "m1@acme.test"},
        {"event": "bounced", "job": "j2", "tenant": "beta", "to": "b@example.test",
         "attempt": "1", "code": "550", "enhanced": "5.1.1", "reply": "5.1.1 unknown — ü"},
        {"event": "rejected", "job": "j3", "tenant": "acme", "field": "to",
         "reason": "missing"},
    ]
    for n in written:
        redis.client.xadd(h.EVENTS_STREAM, n)
    for extra, expect in (([], written), (["--tenant", "acme"],
                                          [n for n in written if n["tenant"] == "acme"])):
        cp = h.herald_cli(["events", "-c", cfg, "--json"] + extra)
        if cp.returncode != 0:
            fails.add("events --json %s: %s" % (" ".join(extra), show(cp)))
            continue
        try:
            got = [json.loads(line) for line in cp.stdout.splitlines() if line.strip()]
        except ValueError as e:
            fails.add("events --json output is not JSON Lines (%s): %s" % (e, show(cp)))
            continue
        fails.check(len(got) == len(expect), "events --json %s: %d lines, expected %d: %s" % (
            " ".join(extra), len(got), len(expect), show(cp)))
        for g, w in zip(got, expect):
            for k, v in w.items():
                fails.check(str(g.get(k)) == v, "events --json %s: %s=%r, expected %r" % (
                    " ".join(extra), k, g.get(k), v))

    cp = h.herald_cli(["events", "-c", cfg])
    fails.check(cp.returncode == 0 and "j2" in cp.stdout,
                "events (human format) should list the notes: " + show(cp))
    fails.raise_if_any("herald CLI")


if __name__ == "__main__":
    h.main(run)
