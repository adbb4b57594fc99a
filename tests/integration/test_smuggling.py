"""SMTP smuggling: job bodies (the `text` field and `raw` messages) full of
bare LF, bare CR, "\\n.\\n", "\\r.\\r", "\\r\\n.\\n", "\\n.\\r\\n", a leading
".\\r\\n", lines of only "." and an embedded "CRLF.CRLF MAIL FROM ..." go to
three real receivers:

- a private Postfix instance (its own main.cf, master.cf, queue and data
  directories under the test's temp dir; master started with
  `postfix -c CONFDIR start`), whose real `smtpd` puts every message in the
  hold queue, so nothing is delivered anywhere. The queue is read back with
  `postqueue -j` (messages per recipient) and `postcat -hbq` (content).
  Its smtpd runs with `smtpd_forbid_bare_newline = reject` (no exclusions),
  so a bare LF from herald inside DATA is refused too;
- Postfix's smtp-sink (Postfix's SMTP server code without a queue, dumping
  each transaction to a file);
- aiosmtpd.

Each job must arrive as exactly ONE message, and its decoded content must
equal the input with line endings normalised: nothing ends DATA early,
nothing is lost, no second (smuggled) message appears.

The Postfix instance needs root (master drops to the `postfix` user) and
the postfix binaries; without them, or when the instance does not start,
only that part is skipped: the smtp-sink and aiosmtpd checks still run and
still fail the test, and when they pass the test exits 77 (skipped) with
the reason."""

import atexit
import email
import email.policy
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import harness as h
import postfix_conf

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


# Recipient domains, one per receiver (herald routes each to its server).
AIOSMTPD_DOMAIN = "example.test"
SINK_DOMAIN = "pf.sink.test"
SMTPD_DOMAIN = "pf.smtpd.test"
TAGS = {AIOSMTPD_DOMAIN: "aio", SINK_DOMAIN: "sink", SMTPD_DOMAIN: "smtpd"}

POSTFIX_MAIN_CF = """\
compatibility_level = 3.6
config_directory = {conf}
queue_directory = {queue}
data_directory = {data}
mail_owner = postfix
setgid_group = postdrop
maillog_file = {conf}/maillog
maillog_file_prefixes = {conf}
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = mx.smtpd.test
mydomain = smtpd.test
myorigin = $myhostname
mydestination = {domain}
local_recipient_maps =
alias_maps =
alias_database =
mynetworks = 127.0.0.0/8
smtpd_peername_lookup = no
smtpd_forbid_bare_newline = reject
smtpd_forbid_bare_newline_exclusions =
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_recipient_restrictions = check_recipient_access static:HOLD, permit_mynetworks, reject
content_filter =
header_checks =
body_checks =
biff = no
"""



class PostfixInstance:
    """A private Postfix (master, smtpd, cleanup, qmgr...) configured in
    DIR/conf with its queue in DIR/queue; every accepted message is held.
    The system Postfix (/etc/postfix, /var/spool/postfix) is not touched.
    Construct only through start_postfix_smtpd(); stop() is idempotent and
    also registered with atexit."""

    def __init__(self, base, port):
        self.base = base
        self.conf = os.path.join(base, "conf")
        self.queue = os.path.join(base, "queue")
        self.data = os.path.join(base, "data")
        self.port = port
        self.master_pid = None
        self.started = False

    def cmd(self, args, timeout=60):
        """Run a postfix command against this instance; CompletedProcess
        with bytes stdout/stderr. Raises TestFailure on timeout."""
        argv = [args[0], "-c", self.conf] + list(args[1:])
        try:
            return subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, timeout=h.scaled(timeout))
        except subprocess.TimeoutExpired:
            raise h.TestFailure("%s did not finish within %.0fs" % (
                " ".join(argv), h.scaled(timeout)))

    def maillog_tail(self, n=30):
        try:
            with open(os.path.join(self.conf, "maillog"), "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
        except OSError as e:
            return "(no maillog: %s)" % e
        return "\n".join(lines[-n:]) or "(maillog empty)"

    def write_config(self):
        for d, mode in ((self.conf, 0o755), (self.queue, 0o755), (self.data, 0o700)):
            os.makedirs(d, mode=mode, exist_ok=True)
            os.chmod(d, mode)
        shutil.chown(self.data, user="postfix")
        with open(os.path.join(self.conf, "main.cf"), "w") as f:
            f.write(POSTFIX_MAIN_CF.format(conf=self.conf, queue=self.queue,
                                           data=self.data, domain=SMTPD_DOMAIN))
        with open(os.path.join(self.conf, "master.cf"), "w") as f:
            f.write(postfix_conf.master_cf(self.port))

    def _read_master_pid(self):
        try:
            with open(os.path.join(self.queue, "pid", "master.pid")) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def start(self):
        """postfix check (creates the queue directories with Postfix's own
        ownership rules), postfix start, then wait for the smtpd port.
        Returns None on success, else a reason string."""
        self.write_config()
        cp = self.cmd(["postfix", "check"])
        if cp.returncode != 0:
            return "postfix check failed (exit %d): %s" % (
                cp.returncode, cp.stderr.decode("utf-8", "replace").strip())
        self.started = True  # from here on, stop() has something to do
        cp = self.cmd(["postfix", "start"])
        self.master_pid = self._read_master_pid()
        if cp.returncode != 0:
            return "postfix start failed (exit %d): %s" % (
                cp.returncode, cp.stderr.decode("utf-8", "replace").strip())
        self.master_pid = self._read_master_pid()
        if not h.wait_port(self.port, h.scaled(15)):
            return "smtpd did not listen on 127.0.0.1:%d within %.0fs" % (
                self.port, h.scaled(15))
        # master accepts the connection itself: only a 220 greeting shows
        # that smtpd runs with this configuration.
        banner = self.banner(h.scaled(10))
        if not banner.startswith(b"220"):
            return "smtpd on 127.0.0.1:%d gave no 220 greeting (got %r)" % (self.port, banner)
        return None

    def banner(self, timeout):
        """The first line the server sends, or b"" (bounded by timeout)."""
        deadline = time.monotonic() + timeout
        data = b""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as c:
                while b"\n" not in data and time.monotonic() < deadline:
                    c.settimeout(max(0.1, deadline - time.monotonic()))
                    chunk = c.recv(512)
                    if not chunk:
                        break
                    data += chunk
                if data.startswith(b"220"):
                    c.sendall(b"QUIT\r\n")
        except OSError:
            pass
        return data.split(b"\n", 1)[0].rstrip(b"\r")

    def _master_alive(self):
        if self.master_pid is None:
            return False
        try:
            with open("/proc/%d/stat" % self.master_pid) as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
            with open("/proc/%d/cmdline" % self.master_pid, "rb") as f:
                cmdline = f.read()
        except (OSError, IndexError):
            return False
        return state != "Z" and b"master" in cmdline

    def stop(self):
        """postfix stop, then wait (bounded) for our master to exit; if it
        does not, SIGKILL its process group (master runs in its own session,
        so that group is exactly this instance's processes)."""
        if not self.started:
            return
        self.started = False
        if self.master_pid is None:
            self.master_pid = self._read_master_pid()
        try:
            self.cmd(["postfix", "stop"], timeout=30)
        except h.TestFailure as e:
            h.log("postfix stop: %s" % e)
        deadline = time.monotonic() + h.scaled(15)
        while self._master_alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        if self._master_alive():
            h.log("postfix master pid %d still running after postfix stop: SIGKILL its group"
                  % self.master_pid)
            try:
                os.killpg(self.master_pid, signal.SIGKILL)
            except OSError:
                pass

    def held_messages(self):
        """postqueue -j: one dict per queued message (queue_name, queue_id,
        recipients...)."""
        cp = self.cmd(["postqueue", "-j"])
        if cp.returncode != 0:
            raise h.TestFailure("postqueue -j failed (exit %d): %s" % (
                cp.returncode, cp.stderr.decode("utf-8", "replace")))
        out = []
        for line in cp.stdout.decode("utf-8", "replace").splitlines():
            if line.strip():
                out.append(json.loads(line))
        return out

    def message_content(self, queue_id):
        """The message as Postfix stored it (headers, blank line, body; LF
        line ends), from postcat -h -b."""
        cp = self.cmd(["postcat", "-hbq", queue_id])
        if cp.returncode != 0:
            raise h.TestFailure("postcat -hbq %s failed (exit %d): %s" % (
                queue_id, cp.returncode, cp.stderr.decode("utf-8", "replace")))
        return cp.stdout


def start_postfix_smtpd():
    """Start a private Postfix instance under the test's temp dir and return
    it, or raise h.Skip saying why it cannot run here."""
    if os.getuid() != 0:
        raise h.Skip("not root (uid %d): a private Postfix master needs root" % os.getuid())
    path = os.environ.get("PATH", "") + ":/usr/sbin:/usr/lib/postfix/sbin"
    missing = [b for b in ("postfix", "postqueue", "postcat") if not shutil.which(b, path=path)]
    if missing:
        raise h.Skip("postfix binaries missing: %s" % ", ".join(missing))
    try:
        pwd.getpwnam("postfix")
    except KeyError:
        raise h.Skip("no `postfix` user")
    # Postfix daemons drop to the postfix user and open files by absolute
    # path under the data directory: it must be able to traverse the temp
    # dir (search only, no listing).
    os.chmod(h.tmpdir().path, 0o711)
    last = ""
    for attempt in range(3):
        pf = PostfixInstance(h.tmpdir().mkdir("postfix"), h.free_port())
        atexit.register(pf.stop)
        reason = pf.start()
        if reason is None:
            h.log("postfix smtpd (private instance, master pid %s) on port %d, config %s"
                  % (pf.master_pid, pf.port, pf.conf))
            return pf
        last = "%s; maillog tail:\n%s" % (reason, pf.maillog_tail(15))
        pf.stop()
        if "in use" not in last:
            break
    raise h.Skip("private Postfix instance did not start: %s" % last)


def check_postfix(pf, pf_jobs, fails):
    """Every job sent to the Postfix domain is exactly one held message for
    its own recipient, with its content intact; no other message (e.g. for
    a smuggled victim@evil.test) was queued. Returns the number of problems
    found."""
    before = len(fails.items)
    queued = pf.held_messages()
    by_rcpt = {}
    for q in queued:
        rcpts = [r.get("address", "") for r in q.get("recipients", [])]
        if q.get("queue_name") != "hold":
            fails.add("postfix: message %s in queue %r, expected hold (recipients %s)" % (
                q.get("queue_id"), q.get("queue_name"), rcpts))
        if len(rcpts) != 1:
            fails.add("postfix: message %s has recipients %s, expected exactly one" % (
                q.get("queue_id"), rcpts))
        for r in rcpts:
            by_rcpt.setdefault(r.lower(), []).append(q)

    for rcpt, (subject, kind, body) in sorted(pf_jobs.items()):
        arrived = by_rcpt.pop(rcpt.lower(), [])
        if len(arrived) != 1:
            fails.add("%s: expected exactly one message queued by postfix smtpd for %s, got %d"
                      % (subject, rcpt, len(arrived)))
            continue
        data = pf.message_content(arrived[0]["queue_id"])
        msg = email.message_from_bytes(data, policy=email.policy.default)
        if not fails.check(str(msg["subject"]) == subject,
                           "%s: postfix message %s for %s has subject %r" % (
                               subject, arrived[0]["queue_id"], rcpt, str(msg["subject"]))):
            continue
        if kind == "text":
            text = msg.get_body(preferencelist=("plain",)).get_content()
            fails.check(norm(text) == norm(body), "%s: postfix text %r != %r" % (
                subject, text, body))
        else:
            raw = data.decode("utf-8", "replace")
            received_body = raw.split("\n\n", 1)[1] if "\n\n" in raw else ""
            fails.check(norm(received_body) == norm(body),
                        "%s: postfix raw body %r != %r" % (subject, received_body, body))
    for rcpt, qs in sorted(by_rcpt.items()):
        fails.add("postfix queued %d unexpected message(s) for %s (%s): smuggled?" % (
            len(qs), rcpt, ", ".join(q.get("queue_id", "?") for q in qs)))
    return len(fails.items) - before


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
    try:
        pf, pf_skip = start_postfix_smtpd(), None
    except h.Skip as e:
        pf, pf_skip = None, str(e)
        h.log("postfix smtpd part SKIPPED: %s" % pf_skip)
    try:
        check_receivers(dump_dir, pf)
    except BaseException:
        if pf is not None:
            h.log("postfix maillog tail (%s/maillog):\n%s" % (pf.conf, pf.maillog_tail(40)))
        raise
    finally:
        if pf is not None:
            pf.stop()
    if pf_skip:
        raise h.Skip("postfix smtpd part skipped (smtp-sink and aiosmtpd parts passed): %s"
                     % pf_skip)


def check_receivers(dump_dir, pf):
    smtp = h.start_aiosmtpd()
    sink, sink_port = start_smtp_sink(dump_dir)
    redis = h.start_redis()
    routes = {"*.sink.test": "127.0.0.1:%d" % sink_port}
    dests = [AIOSMTPD_DOMAIN, SINK_DOMAIN]
    if pf is not None:
        routes["*.smtpd.test"] = "127.0.0.1:%d" % pf.port
        dests.append(SMTPD_DOMAIN)
    routes["*"] = "127.0.0.1:%d" % smtp.port
    cfg = h.write_config(h.base_config(redis, smtp.port, routes=routes))
    jobs, expect, pf_jobs = [], {}, {}
    for i, body in enumerate(BODIES):
        for kind in ("text", "raw"):
            for dest in dests:
                subject = "%s-%02d-%s" % (kind, i, TAGS[dest])
                # A distinct recipient per job: Postfix's queue is read by recipient.
                to = "%s%02d@%s" % (kind, i, dest)
                job = {"id": subject, "tenant": "acme", "to": to}
                if kind == "text":
                    job.update(subject=subject, text=body)
                else:
                    job["raw"] = ("From: Acme <reminders@acme.test>\r\nTo: c@%s\r\n"
                                  "Subject: %s\r\n\r\n" % (dest, subject)) + body
                jobs.append(job)
                if dest == SMTPD_DOMAIN:
                    pf_jobs[to] = (subject, kind, body)
                else:
                    expect[subject] = (kind, body, dest)
    h.xadd_jobs(redis, jobs)
    herald = h.run_herald(cfg)
    h.wait_terminal(redis, [j["id"] for j in jobs], timeout=60, herald=herald)
    per_dest = len(BODIES) * 2
    smtp.wait_count(per_dest, 10)
    deadline = time.monotonic() + h.scaled(10)
    while len(dump_files(dump_dir)) < per_dest and time.monotonic() < deadline:
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
            sep = "\r\n\r\n" if dest == AIOSMTPD_DOMAIN else "\n\n"
            received_body = raw.split(sep, 1)[1] if sep in raw else ""
            fails.check(norm(received_body) == norm(body),
                        "%s: raw body %r != %r" % (subject, received_body, body))
            if dest == AIOSMTPD_DOMAIN:
                fails.check(meta["content"].endswith(crlf(body).encode() + (
                    b"" if crlf(body).endswith("\r\n") else b"\r\n")),
                    "%s: aiosmtpd content does not end with the CRLF-normalised body: %r" % (
                        subject, meta["content"][-80:]))
                fails.check(b"\nDate: " in b"\n" + meta["content"] and
                            b"\nMessage-ID: <" in b"\n" + meta["content"],
                            "%s: Date/Message-ID not added" % subject)
    for subject, arrived in got.items():
        fails.add("unexpected message %r (%d copies): smuggled?" % (subject, len(arrived)))

    if pf is not None:
        if not check_postfix(pf, pf_jobs, fails):
            h.log("ok  postfix smtpd: %d jobs, each exactly one held message for its "
                  "recipient with its content intact; nothing else queued" % len(pf_jobs))
    fails.raise_if_any("smuggling")
    h.log("ok  %d jobs, each arrived once at %s with its content intact"
          % (len(jobs), ", ".join(["aiosmtpd", "smtp-sink"] +
                                  (["postfix smtpd"] if pf is not None else []))))


if __name__ == "__main__":
    h.main(run)
