"""The peers herald is measured against, in the same run: the plain-SMTP wire
limit (smtp-source -> smtp-sink), herald-sink's own ceiling (smtp-source ->
herald-sink), Postfix as a relay MTA, and a Nodemailer pool fed from a Redis
stream. Each returns msgs/s, CPU s per 10k messages and peak RSS of the
sender under test."""
import os
import pwd
import subprocess
import time

from .common import (EVENTS_KEY, MSG_LEN, ROOT, BenchError, cpu_s, enqueue_jobs, free_port,
                     log, peak_rss_mb, progress, read_line, read_notes, sink_stats, start_redis,
                     start_sink, tree_cpu_s, tree_pss_mb, wait_port, wait_until)


def smtp_source(ctx, step, port, n, conns, name):
    """smtp-source sending n messages over `conns` sessions kept open (-d), as
    herald keeps its pooled connections open. Returns (wall s, CPU s, RSS MB)."""
    argv = ["smtp-source", "-d", "-s", str(conns), "-m", str(n), "-l", str(MSG_LEN),
            "-t", "to@bench.test", "-f", "from@bench.test", "127.0.0.1:%d" % port]
    t0 = time.monotonic()
    p = ctx.procs.start(name, argv)
    rc, cpu, rss = ctx.procs.wait(p, ctx.args.timeout_s,
                                  show=lambda e: progress("%s: smtp-source, %.1f s" % (step, e)))
    wall = time.monotonic() - t0
    if rc != 0:
        raise BenchError("%s: smtp-source exited %d:\n%s" % (step, rc, ctx.procs.tail(name)))
    return wall, cpu, rss


def run_wire(ctx, step, conns):
    """smtp-source -> smtp-sink: what plain SMTP over loopback can carry. The
    CPU and RSS are smtp-source's (the sender); smtp-sink's is reported aside."""
    n = ctx.args.peer_jobs or ctx.args.jobs
    port = free_port()
    argv = ["smtp-sink"] + (["-u", "nobody"] if os.geteuid() == 0 else [])
    p = ctx.procs.start("smtp-sink", argv + ["127.0.0.1:%d" % port, "1000"])
    if not wait_port(port, p):
        raise BenchError("smtp-sink did not start:\n" + ctx.procs.tail("smtp-sink"))
    wall, cpu, rss = smtp_source(ctx, step, port, n, conns, "smtp-source")
    _, sink_cpu, _ = ctx.procs.reap(p)
    return {"messages": n, "wall_s": wall, "msgs_per_s": n / wall, "cpu_s": cpu,
            "cpu_s_per_10k": cpu / n * 1e4, "peak_rss_mb": rss,
            "sink_cpu_s_per_10k": sink_cpu / n * 1e4, "ok": True}


def run_ceiling(ctx, step, conns):
    """smtp-source -> herald-sink: shows the sink is not what limits herald."""
    n = ctx.args.peer_jobs or ctx.args.jobs
    p, port, stats = start_sink(ctx.procs, ctx.args.sink, "ceiling-sink")
    wall, cpu, rss = smtp_source(ctx, step, port, n, conns, "smtp-source")
    _, sink_cpu, _ = ctx.procs.reap(p)
    got = sink_stats(stats).get("messages", -1)
    if got != n:
        log("  %s: herald-sink counted %d of %d messages" % (step, got, n))
    return {"messages": n, "wall_s": wall, "msgs_per_s": n / wall, "cpu_s": cpu,
            "cpu_s_per_10k": cpu / n * 1e4, "peak_rss_mb": rss,
            "sink_cpu_s_per_10k": sink_cpu / n * 1e4, "sink_messages": got, "ok": got == n}


# ---- Postfix as a relay ----------------------------------------------------

MASTER_CF = """\
127.0.0.1:%(port)d inet n - n - - smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
tlsmgr    unix  - - n 1000? 1 tlsmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
smtp      unix  - - n - - smtp
relay     unix  - - n - - smtp
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
"""

MAIN_CF = """\
compatibility_level = 3.6
queue_directory = %(dir)s/queue
data_directory = %(dir)s/data
maillog_file = %(dir)s/maillog
maillog_file_prefixes = %(dir)s
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = loopback-only
inet_protocols = ipv4
myhostname = relay.bench.test
mydestination =
local_recipient_maps =
local_transport = error:no local delivery in the bench
alias_maps =
alias_database =
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_client_connection_count_limit = 0
smtpd_client_event_limit_exceptions = 127.0.0.0/8
relayhost = [127.0.0.1]:%(sink_port)d
default_transport = smtp
smtpd_tls_security_level = none
default_destination_concurrency_limit = %(conns)d
smtp_destination_concurrency_limit = %(conns)d
initial_destination_concurrency = %(conns)d
default_process_limit = %(procs)d
smtputf8_enable = no
biff = no
"""


def postfix_ctl(conf, what):
    p = subprocess.run(["postfix", "-c", conf, what], capture_output=True, timeout=120)
    return p.returncode, (p.stdout + p.stderr).decode(errors="replace")


def tail_file(path, n=10):
    try:
        with open(path, "rb") as f:
            return "\n".join(f.read().decode(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def read_pid(path):
    try:
        with open(path) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def run_postfix_relay(ctx, step, conns, tls=False):
    """smtp-source -> a private Postfix (own config and queue directory in the
    temp dir, listening on a free loopback port, relayhost = herald-sink) ->
    herald-sink, timed until the sink has recorded n messages.

    CPU is Postfix's: master and every process below it (smtpd, cleanup,
    qmgr, smtp, trivial-rewrite...), each live one's utime+stime plus the
    cutime+cstime it holds for children it already reaped, so short-lived
    daemons are counted through master. Read at the start and at the end.
    smtp-source and the sink are outside that tree. RSS: the largest sum of
    the tree's PSS seen, sampled every 0.5 s (PSS splits shared pages)."""
    n = ctx.args.peer_jobs or ctx.args.jobs
    d = os.path.join(ctx.tmp, "postfix")
    conf = os.path.join(d, "conf")
    for sub in ("conf", "queue", "data"):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
    os.chmod(ctx.tmp, 0o755)  # the postfix user must reach its queue
    os.chmod(d, 0o755)
    pw = pwd.getpwnam("postfix")
    os.chown(os.path.join(d, "data"), pw.pw_uid, pw.pw_gid)
    record = os.path.join(ctx.tmp, "relay-record.txt")
    sink, sink_port, stats = start_sink(ctx.procs, ctx.args.sink, "relay-sink",
                                        extra=("--record", record),
                                        tls=ctx.tls_files() if tls else None)
    port = free_port()
    with open(os.path.join(conf, "main.cf"), "w") as f:
        f.write(MAIN_CF % {"dir": d, "sink_port": sink_port, "conns": conns,
                           "procs": max(100, 2 * conns + 20)})
        if tls:
            f.write("smtp_tls_security_level = encrypt\nsmtp_tls_CAfile = %s\n" % ctx.tls_ca())
    with open(os.path.join(conf, "master.cf"), "w") as f:
        f.write(MASTER_CF % {"port": port})
    rc, out = postfix_ctl(conf, "start")
    master = read_pid(os.path.join(d, "queue", "pid", "master.pid"))
    try:
        if rc != 0 or not master or not wait_port(port, None, 15):
            raise BenchError("postfix -c %s start exited %d:\n%s%s" % (
                conf, rc, out[-1000:], tail_file(os.path.join(d, "maillog"))))
        cpu0 = tree_cpu_s(master)
        t0_unix = time.time()
        t0 = time.monotonic()
        src = ctx.procs.start("smtp-source", [
            "smtp-source", "-d", "-s", str(conns), "-m", str(n), "-l", str(MSG_LEN),
            "-t", "to@bench.test", "-f", "from@bench.test", "127.0.0.1:%d" % port])
        seen, last_ms, pss = [0], [0], [0.0]
        pos = [0]
        sampled = [0.0]

        def done():
            with open(record, "rb") as f:
                f.seek(pos[0])
                data = f.read()
            cut = data.rfind(b"\n") + 1
            pos[0] += cut
            lines = data[:cut].splitlines()
            if lines:
                seen[0] += len(lines)
                last_ms[0] = int(lines[-1].split()[0])
            if time.monotonic() - sampled[0] >= 0.5:
                sampled[0] = time.monotonic()
                pss[0] = max(pss[0], tree_pss_mb(master))
            return seen[0] >= n

        wait_until("postfix-relay", done, ctx.args.timeout_s, step_s=0.1,
                   show=lambda e: progress("%s: %d/%d at the sink, %.1f s" % (
                       step, seen[0], n, e)))
        wall = max(last_ms[0] / 1000.0 - t0_unix, time.monotonic() - t0 - 1.0, 1e-3)
        cpu = tree_cpu_s(master) - cpu0
        pss[0] = max(pss[0], tree_pss_mb(master))
        src_rc, src_cpu, _ = ctx.procs.wait(src, 60)
    finally:
        postfix_ctl(conf, "stop")
        deadline = time.monotonic() + 20
        while master and os.path.exists("/proc/%d" % master) and time.monotonic() < deadline:
            time.sleep(0.1)
        if master and os.path.exists("/proc/%d" % master):
            os.kill(master, 9)
    ctx.procs.stop(sink)
    got = sink_stats(stats).get("messages", -1)
    ok = got == n and src_rc == 0
    if not ok:
        log("  %s: sink counted %d of %d, smtp-source exit %d" % (step, got, n, src_rc))
    return {"messages": n, "wall_s": wall, "msgs_per_s": n / wall, "cpu_s": cpu,
            "cpu_s_per_10k": cpu / n * 1e4, "peak_rss_mb": pss[0],
            "source_cpu_s_per_10k": src_cpu / n * 1e4, "sink_messages": got, "ok": ok}


# ---- Nodemailer ------------------------------------------------------------

NODE_DIR = os.path.join(ROOT, "bench", "nodemailer")


def nodemailer_ready():
    """npm ci when node_modules is missing; returns a reason it cannot run, or None."""
    if not os.path.isdir(os.path.join(NODE_DIR, "node_modules")):
        log("nodemailer: npm ci in %s" % NODE_DIR)
        try:
            p = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR,
                               capture_output=True, timeout=300)
        except (OSError, subprocess.TimeoutExpired) as e:
            return "npm ci failed: %s" % e
        if p.returncode != 0:
            return "npm ci exited %d: %s" % (p.returncode, p.stderr.decode()[-1000:])
    return None


def run_nodemailer(ctx, step, conns, tls=False):
    """N jobs in a Redis stream, then a Node worker (bench/nodemailer/worker.js)
    reads them with XREADGROUP, sends through a Nodemailer pool of `conns`
    connections and writes XACK + a note per message. Timed from its start
    signal to the last note's `at`; CPU and RSS are node's, Redis's aside."""
    args, procs = ctx.args, ctx.procs
    n = args.peer_jobs or args.jobs
    redis, redis_port, r = start_redis(procs)
    sink, sink_port, stats = start_sink(procs, args.sink, "node-sink",
                                        tls=ctx.tls_files() if tls else None)
    enqueue_jobs(r, 0, n)
    node = procs.start("nodemailer", [
        "node", os.path.join(NODE_DIR, "worker.js"), "--redis-port", str(redis_port),
        "--smtp-port", str(sink_port), "--connections", str(conns), "--jobs", str(n),
        *(["--starttls", ctx.tls_ca()] if tls else [])],
        stdout=subprocess.PIPE, stdin=subprocess.PIPE, cwd=NODE_DIR)
    if read_line(node, 30).strip() != "ready":
        raise BenchError("nodemailer worker did not start:\n" + procs.tail("nodemailer"))
    cpu0, redis0 = cpu_s(node.pid), cpu_s(redis.pid)
    t0_unix = time.time()
    node.stdin.write(b"go\n")
    node.stdin.flush()
    notes = [0]

    def done():
        notes[0] = r.cmd("XLEN", EVENTS_KEY)
        return notes[0] >= n

    wall = wait_until("nodemailer", done, args.timeout_s, alive=lambda: node.poll() is None,
                      show=lambda e: progress("%s: %d/%d notes, %.1f s" % (step, notes[0], n, e)))
    cpu, rss = cpu_s(node.pid) - cpu0, peak_rss_mb(node.pid)
    redis_cpu = cpu_s(redis.pid) - redis0
    line = read_line(node, 10).strip()
    node.stdin.close()
    procs.stop(node, timeout_s=10)
    events, _, last_at = read_notes(r)
    r.close()
    procs.stop(sink)
    got = sink_stats(stats).get("messages", -1)
    if last_at:
        wall = max(last_at / 1000.0 - t0_unix, 1e-3)
    ok = events.get("delivered", 0) == n and got == n and line.startswith("done %d" % n)
    if not ok:
        log("  %s: worker said %r, events %s, sink counted %d of %d" % (
            step, line, events, got, n))
    return {"messages": n, "wall_s": wall, "msgs_per_s": n / wall, "cpu_s": cpu,
            "cpu_s_per_10k": cpu / n * 1e4, "peak_rss_mb": rss,
            "redis_cpu_s_per_10k": redis_cpu / n * 1e4, "sink_messages": got,
            "events": events, "ok": ok}
