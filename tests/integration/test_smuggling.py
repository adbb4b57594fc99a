"""SMTP smuggling: job bodies (the `text` field and `raw` messages) full of
bare LF, bare CR, "\\n.\\n", "\\r.\\r", "\\r\\n.\\n", "\\n.\\r\\n", a leading
".\\r\\n", lines of only "." and an embedded "CRLF.CRLF MAIL FROM ..." go to
two real receivers: Postfix's smtp-sink (Postfix's own SMTP server code,
dumping each transaction to a file) and aiosmtpd. Each job must arrive as
exactly ONE message, and its decoded content must equal the input with
line endings normalised: nothing ends DATA early, nothing is lost."""

import email
import email.policy
import os
import shutil
import tempfile
import time

import harness as h

BODIES = [
    "bare LF\nsecond line",
    "bare CR\rsecond line",
    "x\n.\ny",
    "x\r.\ry",
    "x\r\n.\ny",
    "x\n.\r\ny",
    ".\r\nstarts with a dot line",
    ".",
    "..\n...\n.",
    "\r\n.\r\n",
    "before\r\n.\r\nMAIL FROM:<evil@evil.test>\r\nRCPT TO:<victim@evil.test>\r\nDATA\r\n"
    "Subject: smuggled\r\n\r\nsmuggled body\r\n.\r\nafter",
    "lf-dot-cr\n.\rMAIL FROM:<evil@evil.test>\r\n",
    "cr-dot-lf\r.\nRSET\r\n",
    "\n.\n\n.\n",
    "tail with dot\r\n.",
]


def norm(s):
    return s.replace("\r\n", "\n").replace("\r", "\n").rstrip("\n")


def crlf(s):
    return s.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\r\n")


def start_smtp_sink(dump_dir):
    exe = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
    h.check(os.path.exists(exe), "smtp-sink (package postfix) is not installed")
    os.chmod(dump_dir, 0o777)
    for _ in range(5):
        port = h.free_port()
        argv = [exe, "-d", os.path.join(dump_dir, "%H%M%S.")]
        if os.getuid() == 0:
            argv += ["-u", "nobody"]  # smtp-sink refuses to keep root privileges
        argv += ["127.0.0.1:%d" % port, "64"]
        proc = h.Proc("smtp-sink", argv)
        if h.wait_port(port, 10, proc=proc):
            h.log("smtp-sink on port %d, dumps in %s" % (port, dump_dir))
            return proc, port
        last = proc.tail(10)
        proc.stop(timeout=2)
    raise h.TestFailure("smtp-sink did not start: %s" % last)


def dump_files(d):
    out = []
    for root, _, files in os.walk(d):
        out += [os.path.join(root, f) for f in files]
    return sorted(out)


def run():
    # smtp-sink drops root for `nobody`, which cannot enter the harness's
    # private temp dir: its dumps go to a world-writable dir of their own.
    dump_dir = tempfile.mkdtemp(prefix="herald-smtp-sink-")
    try:
        check_all(dump_dir)
    finally:
        shutil.rmtree(dump_dir, ignore_errors=True)


def check_all(dump_dir):
    smtp = h.start_aiosmtpd()
    sink, sink_port = start_smtp_sink(dump_dir)
    redis = h.start_redis()
    cfg = h.write_config(h.base_config(
        redis, smtp.port, routes={"*.sink.test": "127.0.0.1:%d" % sink_port,
                                  "*": "127.0.0.1:%d" % smtp.port}))
    jobs, expect = [], {}
    for i, body in enumerate(BODIES):
        for kind in ("text", "raw"):
            for dest in ("example.test", "pf.sink.test"):
                subject = "%s-%02d-%s" % (kind, i, dest.split(".")[0])
                job = {"id": subject, "tenant": "acme", "to": "c%02d@%s" % (i, dest)}
                if kind == "text":
                    job.update(subject=subject, text=body)
                else:
                    job["raw"] = ("From: Acme <reminders@acme.test>\r\nTo: c@%s\r\n"
                                  "Subject: %s\r\n\r\n" % (dest, subject)) + body
                jobs.append(job)
                expect[subject] = (kind, body, dest)
    h.xadd_jobs(redis, jobs)
    herald = h.run_herald(cfg)
    notes = h.wait_terminal(redis, [j["id"] for j in jobs], timeout=60, herald=herald)
    half = len(jobs) // 2
    smtp.wait_count(half, 10)
    deadline = time.monotonic() + h.scaled(10)
    while len(dump_files(dump_dir)) < half and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)  # anything extra (a smuggled second message) would show up now
    herald.stop()
    sink.stop()

    fails = h.Failures()
    by_job = h.notes_by_job(h.read_notes(redis))
    for j in jobs:
        ns = [n for n in by_job.get(j["id"], []) if h.is_terminal(n)]
        fails.check(len(ns) == 1 and ns[0].get("event") == "delivered",
                    "%s: expected one delivered note, got %s" % (
                        j["id"], "; ".join(h.format_note(n) for n in ns) or "none"))

    # aiosmtpd: exact bytes after unstuffing
    got = {}
    for m in smtp.messages():
        msg = email.message_from_bytes(m["content"], policy=email.policy.default)
        got.setdefault(str(msg["subject"]), []).append((m, msg))
    # smtp-sink: one dump file per transaction
    for path in dump_files(dump_dir):
        with open(path, "rb") as f:
            data = f.read()
        msg = email.message_from_bytes(data, policy=email.policy.default)
        got.setdefault(str(msg["subject"]), []).append(({"path": path, "content": data}, msg))

    for subject, (kind, body, dest) in sorted(expect.items()):
        arrived = got.pop(subject, [])
        if len(arrived) != 1:
            fails.add("%s: expected exactly one message at %s, got %d" % (
                subject, dest, len(arrived)))
            continue
        meta, msg = arrived[0]
        if kind == "text":
            text = msg.get_body(preferencelist=("plain",)).get_content()
            fails.check(norm(text) == norm(body), "%s: text %r != %r" % (subject, text, body))
        else:
            raw = meta["content"].decode("utf-8", "replace")
            sep = "\r\n\r\n" if dest == "example.test" else "\n\n"
            received_body = raw.split(sep, 1)[1] if sep in raw else ""
            fails.check(norm(received_body) == norm(body),
                        "%s: raw body %r != %r" % (subject, received_body, body))
            if dest == "example.test":
                fails.check(meta["content"].endswith(crlf(body).encode() + (
                    b"" if crlf(body).endswith("\r\n") else b"\r\n")),
                    "%s: aiosmtpd content does not end with the CRLF-normalised body: %r" % (
                        subject, meta["content"][-80:]))
                fails.check(b"\nDate: " in b"\n" + meta["content"] and
                            b"\nMessage-ID: <" in b"\n" + meta["content"],
                            "%s: Date/Message-ID not added" % subject)
    for subject, arrived in got.items():
        fails.add("unexpected message %r (%d copies): smuggled?" % (subject, len(arrived)))
    fails.raise_if_any("smuggling")
    h.log("ok  %d jobs, each arrived once at smtp-sink or aiosmtpd with its content intact"
          % len(jobs))


if __name__ == "__main__":
    h.main(run)
