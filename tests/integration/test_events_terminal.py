"""`herald events` prints notes, whose fields come from outside (remote SMTP
replies, producers' job ids, recipients), to a terminal: no control byte
(ESC, CR, LF, BEL, DEL, a C1 control such as CSI in UTF-8 or raw) reaches
stdout as it is; each shows as \\xHH, so the table keeps one line per note
and a history block stays one block. --json keeps the exact values (DEL
escaped too) and shows a note with invalid UTF-8 instead of dropping it."""

import json
import subprocess

import harness as h

HOSTILE = "\x1b]0;owned\x07\x1b[2J\r\x9b31m\x7f"


def show(out):
    return repr(out[-1500:])


def raw_controls(out):
    """Control bytes in out (bytes), other than the line feeds between lines."""
    bad = [b for b in out if (b < 0x20 and b != 0x0a) or b == 0x7f]
    text = out.decode("utf-8", "replace")
    bad += [ord(c) for c in text if 0x80 <= ord(c) <= 0x9f]
    bad += [0xfffd] * text.count("\ufffd")  # an invalid byte, e.g. a raw 0x9b
    return bad


def events(cfg, *args):
    return subprocess.run([h.HERALD_BIN, "events", "-c", cfg] + list(args),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=h.scaled(30))


def run():
    redis = h.start_redis()
    cfg = h.write_config(h.base_config(redis, 2525))
    fails = h.Failures()
    note = {"event": "deferred", "tenant": "acme", "at": "1764600000000", "attempt": "1",
            "job": "job-" + HOSTILE, "to": "pat@clinic.test", "mx": "mx" + HOSTILE + ".test",
            "code": "451", "reply": "4.7.1 try later" + HOSTILE + "\r\n250 fake",
            "reason": "why" + HOSTILE, "tls_note": "note" + HOSTILE,
            "message_id": "id" + HOSTILE + "@x", "ref": "ref" + HOSTILE,
            "category": "cat" + HOSTILE}
    redis.client.xadd(h.EVENTS_STREAM, note)
    redis.client.xadd(h.EVENTS_STREAM, dict(note, event="bounced", code="550",
                                            reply="5.1.1 \u009b31m in UTF-8"))
    # A raw 0x9b (CSI to a Latin-1 terminal) that is not UTF-8.
    redis.client.xadd(h.EVENTS_STREAM, {"event": "bounced", "tenant": "acme",
                                        "at": "1764600000001", "job": b"j\x9b2J",
                                        "to": "pat@clinic.test", "reply": b"5.1.1 \x9b2J"})

    table = events(cfg)
    fails.check(table.returncode == 0, "events: exit %d %s" % (table.returncode, table.stderr))
    fails.check(not raw_controls(table.stdout),
                "events (table) printed raw control bytes %s: %s"
                % (sorted(set(raw_controls(table.stdout))), show(table.stdout)))
    lines = table.stdout.decode("utf-8", "replace").splitlines()
    fails.check(len(lines) == 4, "events (table): header + 3 notes expected, got %d lines: %s"
                % (len(lines), show(table.stdout)))
    fails.check(b"job-\\x1b]0;owned\\x07\\x1b[2J\\x0d\\xc2\\x9b31m\\x7f" in table.stdout
                and b"\\x0d\\x0a250 fake" in table.stdout and b"j\\x9b2J" in table.stdout,
                "events (table) should show control bytes as \\xHH: " + show(table.stdout))

    hist = events(cfg, "--to", "pat@clinic.test")
    fails.check(hist.returncode == 0, "events --to: exit %d %s" % (hist.returncode, hist.stderr))
    fails.check(not raw_controls(hist.stdout),
                "events --to (history) printed raw control bytes %s: %s"
                % (sorted(set(raw_controls(hist.stdout))), show(hist.stdout)))
    blocks = [b for b in hist.stdout.split(b"\n\n") if b.strip()]
    fails.check(len(blocks) == 3, "events --to: 3 blocks expected, got %d: %s"
                % (len(blocks), show(hist.stdout)))

    js = events(cfg, "--json")
    got = [json.loads(line) for line in js.stdout.decode().splitlines() if line.strip()]
    fails.check(len(got) == 3 and got[0].get("reply") == note["reply"]
                and got[0].get("job") == note["job"],
                "events --json should keep the exact values: " + show(js.stdout))
    fails.check(len(got) == 3 and got[2].get("job") == "j\ufffd2J",
                "events --json should show a note with invalid UTF-8 (as U+FFFD), not drop it: "
                + show(js.stdout))
    fails.check(not raw_controls(js.stdout), "events --json printed raw control bytes: "
                + show(js.stdout))
    fails.raise_if_any("events on a terminal")


if __name__ == "__main__":
    h.main(run)
