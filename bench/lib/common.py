"""Processes, ports, /proc readings, a tiny RESP client and the progress line
shared by every part of bench/throughput."""
import json
import math
import os
import resource
import select
import signal
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
JOBS_KEY = "herald:jobs"
EVENTS_KEY = "herald:events"
MSG_LEN = 2048
CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    """A part could not run or did not agree with itself; the message says why."""


def log(*a):
    progress_clear()
    print(*a, flush=True)


# ---- progress line ---------------------------------------------------------

_progress = {"shown": False, "last": 0.0}


def progress(text, final=False):
    """One line on stderr: rewritten in place on a tty, else at most one line
    every 5 s and one at the end of each step."""
    if sys.stderr.isatty():
        sys.stderr.write("\r\033[K" + text + ("\n" if final else ""))
        sys.stderr.flush()
        _progress["shown"] = not final
        return
    now = time.monotonic()
    if final or now - _progress["last"] >= 5:
        _progress["last"] = now
        sys.stderr.write(text + "\n")
        sys.stderr.flush()


def progress_clear():
    if _progress["shown"]:
        sys.stderr.write("\r\033[K")
        sys.stderr.flush()
        _progress["shown"] = False


# ---- processes -------------------------------------------------------------

def raise_nofile(n):
    """preexec_fn: lift RLIMIT_NOFILE to n (we run as root) for idle-conns."""
    def fn():
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))
    return fn


class Procs:
    """Processes this run started; stop() ends them by PID, newest first."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.running = []

    def start(self, name, argv, stdout=None, stdin=None, nofile=0, cwd=None):
        err = open(os.path.join(self.tmp, name + ".log"), "ab")
        p = subprocess.Popen(argv, stdin=stdin or subprocess.DEVNULL,
                             stdout=stdout or err, stderr=err, cwd=cwd or self.tmp,
                             preexec_fn=raise_nofile(nofile) if nofile else None)
        err.close()
        p.bench_name = name
        self.running.append(p)
        return p

    def reap(self, p, timeout_s=30):
        """SIGTERM if still running, bounded wait, then SIGKILL. Returns
        (exit status, CPU s from wait4's rusage of that child, and its
        ru_maxrss in MB, which includes the forked Python before the exec)."""
        deadline = time.monotonic() + timeout_s
        signalled = False
        while True:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid == 0 and not signalled:
                p.send_signal(signal.SIGTERM)
                signalled = True
            if pid == p.pid:
                p.returncode = os.waitstatus_to_exitcode(status)
                break
            if time.monotonic() > deadline:
                log("  %s did not exit %ds after SIGTERM; killing it" % (p.bench_name, timeout_s))
                p.kill()
                _, status, ru = os.wait4(p.pid, 0)
                p.returncode = os.waitstatus_to_exitcode(status)
                break
            time.sleep(0.02)
        if p in self.running:
            self.running.remove(p)
        return p.returncode, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024.0

    def wait(self, p, timeout_s, show=None):
        """Wait for p to exit by itself (bounded: killed after timeout_s, then
        BenchError). Returns (exit status, CPU s, peak RSS MB)."""
        t0 = time.monotonic()
        hwm_kb = 0
        while True:
            try:
                hwm_kb = status_kb(p.pid, "VmHWM") or hwm_kb
            except OSError:
                pass
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid == p.pid:
                p.returncode = os.waitstatus_to_exitcode(status)
                self.running.remove(p)
                # Not ru_maxrss: it counts the forked Python before the exec.
                return p.returncode, ru.ru_utime + ru.ru_stime, hwm_kb / 1024.0
            if time.monotonic() - t0 > timeout_s:
                self.reap(p, timeout_s=5)
                raise BenchError("%s: not done after %d s" % (p.bench_name, timeout_s))
            if show:
                show(time.monotonic() - t0)
            time.sleep(0.02)

    def stop(self, p, timeout_s=30):
        if p.returncode is not None or p.poll() is not None:
            if p in self.running:
                self.running.remove(p)
            return p.returncode
        return self.reap(p, timeout_s)[0]

    def stop_all(self):
        for p in reversed(list(self.running)):
            try:
                self.stop(p, timeout_s=10)
            except ChildProcessError:
                self.running.remove(p)

    def tail(self, name, n=15):
        try:
            with open(os.path.join(self.tmp, name + ".log"), "rb") as f:
                lines = f.read().decode(errors="replace").splitlines()[-n:]
            return "\n".join("    " + line for line in lines)
        except OSError:
            return ""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc=None, timeout_s=10):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def read_line(p, timeout_s=10):
    """One line of a child's stdout pipe, or '' after timeout_s."""
    ready, _, _ = select.select([p.stdout], [], [], timeout_s)
    return p.stdout.readline().decode(errors="replace") if ready else ""


def sink_has_starttls(sink):
    try:
        out = subprocess.run([sink, "--help"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return b"--tls-cert" in out.stdout + out.stderr


def start_sink(procs, sink, name, extra=(), tls=None, nofile=0):
    """herald-sink on a kernel-chosen port; returns (proc, port, stats path).
    tls: (cert, key) PEM paths to make it offer STARTTLS."""
    stats = os.path.join(procs.tmp, name + "-stats.json")
    argv = [sink, "--listen", "127.0.0.1:0", "--threads", "1", "--stats", stats, *extra]
    if tls:
        if not sink_has_starttls(sink):
            raise BenchError("herald-sink has no STARTTLS support (%s --help names no "
                             "--tls-cert)" % sink)
        argv += ["--tls-cert", tls[0], "--tls-key", tls[1]]
    p = procs.start(name, argv, stdout=subprocess.PIPE, nofile=nofile)
    line = read_line(p)
    prefix = "herald-sink listening on 127.0.0.1:"
    if not line.startswith(prefix):
        raise BenchError("herald-sink did not start:\n" + procs.tail(name))
    return p, int(line[len(prefix):]), stats


def sink_stats(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


# ---- /proc -----------------------------------------------------------------

def proc_stat(pid):
    """(ppid, utime+stime, cutime+cstime) in seconds of a live process."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[1]), (int(fields[11]) + int(fields[12])) / CLK_TCK,
            (int(fields[13]) + int(fields[14])) / CLK_TCK)


def cpu_s(pid):
    """utime + stime of a live process (all threads), in seconds."""
    return proc_stat(pid)[1]


def status_kb(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def peak_rss_mb(pid):
    return status_kb(pid, "VmHWM") / 1024.0


def rss_kb(pid):
    return status_kb(pid, "VmRSS")


def pss_kb(pid):
    """Proportional set size: shared pages split among their users, so the
    sum over a group of processes does not count libraries N times."""
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def descendants(root_pid):
    """root_pid and every live process below it, from /proc's ppid links."""
    children = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            ppid = proc_stat(int(name))[0]
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(name))
    out, todo = [], [root_pid]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def tree_cpu_s(root_pid):
    """CPU of a process tree: every live member's own utime+stime plus the
    cutime+cstime it holds for children it has already reaped, so processes
    that came and went during the run are counted too."""
    total = 0.0
    for pid in descendants(root_pid):
        try:
            _, own, reaped = proc_stat(pid)
        except (OSError, IndexError, ValueError):
            continue
        total += own + reaped
    return total


def tree_pss_mb(root_pid):
    return sum(pss_kb(pid) for pid in descendants(root_pid)) / 1024.0


# ---- a tiny RESP client (no redis-py needed) -------------------------------

def resp(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class Redis:
    def __init__(self, port, timeout_s=30):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
        self.f = self.sock.makefile("rb")

    def close(self):
        self.f.close()
        self.sock.close()

    def cmd(self, *args):
        self.sock.sendall(resp(*args))
        return self.reply()

    def pipeline(self, payload, n):
        """Send pre-encoded commands in one write, read their n replies."""
        self.sock.sendall(payload)
        return [self.reply() for _ in range(n)]

    def reply(self):
        line = self.f.readline()
        if not line:
            raise ConnectionError("redis closed the connection")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise BenchError("redis: " + rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            return self.f.read(n + 2)[:-2]
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.reply() for _ in range(n)]
        raise BenchError("bad RESP reply %r" % line)


def start_redis(procs):
    port = free_port()
    p = procs.start("redis", ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                              "--save", "", "--appendonly", "no", "--dir", procs.tmp,
                              "--daemonize", "no"])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and p.poll() is None:
        try:
            r = Redis(port, timeout_s=30)
            if r.cmd("PING") == "PONG":
                return p, port, r
        except OSError:
            time.sleep(0.05)
    raise BenchError("redis-server did not start:\n" + procs.tail("redis"))


def job_body():
    line = "Your appointment is confirmed. Please arrive ten minutes early.  "
    return "\n".join([line[:-1]] * (MSG_LEN // len(line)))


def job_fields(i, text):
    """The fields `herald enqueue` writes for one bench job (DESIGN.md's job
    table): two tenants alternating, distinct recipients, ~2 KB of text."""
    return ("tenant", "bench" if i % 2 == 0 else "bench2", "to", "r%d@bench.test" % i,
            "subject", "Reminder %d" % i, "text", text)


def enqueue_jobs(r, first, n, text=None, chunk=1000):
    """XADD n jobs (numbered from first), pipelined chunk at a time."""
    text = text or job_body()
    i = first
    while i < first + n:
        k = min(chunk, first + n - i)
        payload = b"".join(resp("XADD", JOBS_KEY, "*", *job_fields(j, text))
                           for j in range(i, i + k))
        r.pipeline(payload, k)
        i += k


def read_notes(r):
    """Every case note's event counts (plus "tls", the notes whose `tls`
    field names a protocol), latency_ms values (sorted) and the largest
    `at`, read with XRANGE in chunks."""
    events, lat, last_at = {}, [], 0
    start = "-"
    while True:
        chunk = r.cmd("XRANGE", EVENTS_KEY, start, "+", "COUNT", 10000)
        if not chunk:
            break
        for _, fields in chunk:
            kv = dict(zip(fields[0::2], fields[1::2]))
            ev = kv.get(b"event", b"?").decode()
            events[ev] = events.get(ev, 0) + 1
            if kv.get(b"tls", b"none") != b"none":
                events["tls"] = events.get("tls", 0) + 1
            try:
                if b"latency_ms" in kv:
                    lat.append(float(kv[b"latency_ms"]))
                last_at = max(last_at, int(kv.get(b"at", b"0")))
            except ValueError:
                pass
        start = "(" + chunk[-1][0].decode()
        if len(chunk) < 10000:
            break
    lat.sort()
    return events, lat, last_at


def percentile(sorted_vals, q):
    """Nearest-rank percentile of an ascending list."""
    if not sorted_vals:
        return float("nan")
    k = max(0, min(len(sorted_vals) - 1, math.ceil(q / 100.0 * len(sorted_vals)) - 1))
    return sorted_vals[k]


def wait_until(what, done, timeout_s, step_s=0.05, alive=None, show=None):
    """Poll done() until true; alive() false or the timeout raises BenchError.
    show(elapsed) feeds the progress line."""
    t0 = time.monotonic()
    while True:
        if done():
            return time.monotonic() - t0
        if alive is not None and not alive():
            raise BenchError("%s: a process exited while waiting" % what)
        if time.monotonic() - t0 > timeout_s:
            raise BenchError("%s: not done after %d s" % (what, timeout_s))
        if show:
            show(time.monotonic() - t0)
        time.sleep(step_s)
