"""Integration-test harness: real redis-server, a real receiving SMTP server
(aiosmtpd in its own process) or herald-sink, and the herald binary, each on a
free loopback port in a private temp dir, stopped by PID when the test ends.

A test is a function run through harness.main(fn): it exits 0 on pass, 1 on
failure (after printing what was expected, what was seen, herald's stderr
tail and a summary of the case notes), and 77 only when the kernel lacks
io_uring. Every wait is bounded.

Environment (set by CMake's ctest registration):
    HERALD_BIN   the herald binary         (default: build/release/herald)
    HERALD_SINK  the herald-sink binary    (default: build/release/herald-sink)
    HERALD_SRC   the repository root       (default: two levels above this file)
Optional:
    HERALD_TEST_TIME_SCALE   multiply every timeout (default 1, 3 for ASan builds)
    HERALD_KEEP_TMP=1        keep the temp dir even when the test passes
    HERALD_SINK_LISTEN       how herald-sink is told its port, a format string
                             with {port} (default "--listen 127.0.0.1:{port}")

Only the standard library, python3-redis and python3-aiosmtpd are used.
"""

import atexit
import collections
import ctypes
import errno
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

import redis as redislib

PY = "/usr/bin/python3"
HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("HERALD_SRC") or os.path.dirname(os.path.dirname(HERE))
HERALD_BIN = os.environ.get("HERALD_BIN") or os.path.join(SRC, "build", "release", "herald")
HERALD_SINK = os.environ.get("HERALD_SINK") or os.path.join(SRC, "build", "release", "herald-sink")
SINK_LISTEN = os.environ.get("HERALD_SINK_LISTEN", "--listen 127.0.0.1:{port}")

JOBS_STREAM = "herald:jobs"
EVENTS_STREAM = "herald:events"
TERMINAL_EVENTS = ("delivered", "bounced", "expired", "suppressed", "rejected",
                   "duplicate", "cancelled")

SKIP = 77


class TestFailure(Exception):
    """The engine did not do what the test expects."""


class Skip(Exception):
    """The kernel lacks a feature herald needs (io_uring); exit 77."""


# --------------------------------------------------------------------------
# time

def _detect_time_scale():
    env = os.environ.get("HERALD_TEST_TIME_SCALE")
    if env:
        return float(env)
    try:
        with open(HERALD_BIN, "rb") as f:
            if b"__asan_init" in f.read():
                return 3.0
    except OSError:
        pass
    return 1.0


TIME_SCALE = _detect_time_scale()


def scaled(seconds):
    return seconds * TIME_SCALE


def log(msg):
    print("[%7.2f] %s" % (time.monotonic() - _T0, msg), flush=True)


_T0 = time.monotonic()


# --------------------------------------------------------------------------
# processes: everything we start is recorded here and stopped by PID at exit

_procs = []            # Proc objects, in start order
_diagnostics = []      # callables returning text, printed when a test fails
_tmp = None


def _die_with_parent():
    # If the test process is killed (ctest timeout), its servers must not
    # linger: ask the kernel to SIGTERM each child when we die.
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class Proc:
    """A child process with its output in files under the temp dir."""

    def __init__(self, name, argv, env=None, stdin=subprocess.DEVNULL, stdout_path=None):
        self.name = name
        self.argv = [str(a) for a in argv]
        base = tmpdir().unique(name)
        self.stdout_path = stdout_path or base + ".stdout"
        self.stderr_path = base + ".stderr"
        self._out = open(self.stdout_path, "wb")
        self._err = open(self.stderr_path, "wb")
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        try:
            self.popen = subprocess.Popen(self.argv, stdin=stdin, stdout=self._out,
                                          stderr=self._err, env=full_env,
                                          preexec_fn=_die_with_parent)
        except OSError as e:
            self._close_files()
            raise TestFailure("cannot start %s (%s): %s" % (name, self.argv[0], e))
        self.pid = self.popen.pid
        _procs.append(self)

    def _close_files(self):
        for f in (self._out, self._err):
            try:
                f.close()
            except OSError:
                pass

    def alive(self):
        return self.popen.poll() is None

    @property
    def returncode(self):
        return self.popen.poll()

    def send_signal(self, sig):
        if self.alive():
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def wait(self, timeout):
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout=10.0, sig=signal.SIGTERM):
        """Signal, wait up to timeout, then SIGKILL. Returns the exit status
        (negative signal number when killed by one)."""
        if self.alive():
            self.send_signal(sig)
            if self.wait(timeout) is None:
                self.send_signal(signal.SIGKILL)
                self.wait(10)
        self._close_files()
        return self.popen.poll()

    def kill(self):
        self.send_signal(signal.SIGKILL)
        self.wait(10)
        return self.popen.poll()

    def read_stderr(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def read_stdout(self):
        try:
            with open(self.stdout_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def tail(self, n=30, which="stderr"):
        text = self.read_stderr() if which == "stderr" else self.read_stdout()
        lines = text.splitlines()
        return "\n".join(lines[-n:])

    def describe(self):
        rc = self.returncode
        state = "running" if rc is None else "exited %s" % rc
        return "%s pid %d (%s): %s" % (self.name, self.pid, state, " ".join(
            shlex.quote(a) for a in self.argv))


def _stop_all():
    for p in reversed(_procs):
        try:
            p.stop(timeout=5)
        except Exception:
            pass


atexit.register(_stop_all)


# --------------------------------------------------------------------------
# temp dir

class TempDir:
    """A private directory for one test's files; removed at exit unless the
    test failed or HERALD_KEEP_TMP=1."""

    def __init__(self, prefix="herald-it-"):
        self.path = tempfile.mkdtemp(prefix=prefix)
        self.keep = os.environ.get("HERALD_KEEP_TMP") == "1"
        self._counts = collections.Counter()
        atexit.register(self.cleanup)

    def join(self, *parts):
        return os.path.join(self.path, *parts)

    def unique(self, name):
        """A fresh path prefix: NAME, NAME-2, NAME-3..."""
        self._counts[name] += 1
        n = self._counts[name]
        return self.join(name if n == 1 else "%s-%d" % (name, n))

    def mkdir(self, name):
        path = self.unique(name)
        os.makedirs(path)
        return path

    def cleanup(self):
        if self.keep:
            print("(temp dir kept: %s)" % self.path, flush=True)
            return
        shutil.rmtree(self.path, ignore_errors=True)


def tmpdir():
    global _tmp
    if _tmp is None:
        _tmp = TempDir()
    return _tmp


# --------------------------------------------------------------------------
# ports

def free_port():
    """A loopback TCP port that was free a moment ago. Callers that bind it
    later retry on EADDRINUSE (another test may have raced us)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout, proc=None, host="127.0.0.1"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            return False
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


# --------------------------------------------------------------------------
# redis

class Redis:
    """A private redis-server. .client decodes responses to str."""

    def __init__(self, persist=False, tls=None, user=None):
        """tls: (cert, key, ca) to listen with TLS only; user: (name,
        password) to require AUTH as that ACL user (the default user is off)."""
        self.dir = tmpdir().mkdir("redis")
        self.persist = persist
        self.tls = tls
        self.user = user
        self.port = None
        self.proc = None
        self.client = None
        self._start(new_port=True)
        _diagnostics.append(self._diagnose)

    @property
    def url(self):
        scheme = "rediss" if self.tls else "redis"
        user = "%s@" % self.user[0] if self.user else ""
        return "%s://%s127.0.0.1:%d/0" % (scheme, user, self.port)

    def _argv(self):
        argv = [
            "redis-server", "--bind", "127.0.0.1", "--port", str(self.port),
            "--dir", self.dir, "--daemonize", "no", "--protected-mode", "no",
            "--save", "", "--appendonly", "yes" if self.persist else "no",
            "--appendfsync", "always", "--logfile", "",
        ]
        if self.tls:
            argv[4] = "0"
            argv += ["--tls-port", str(self.port), "--tls-cert-file", self.tls[0],
                     "--tls-key-file", self.tls[1], "--tls-ca-cert-file", self.tls[2],
                     "--tls-auth-clients", "no"]
        if self.user:
            argv += ["--user", "default", "off", "--user", self.user[0], "on",
                     ">" + self.user[1], "~*", "&*", "+@all"]
        return argv

    def _start(self, new_port):
        last = ""
        for _ in range(5):
            if new_port or self.port is None:
                self.port = free_port()
            self.proc = Proc("redis", self._argv())
            deadline = time.monotonic() + scaled(10)
            extra = {}
            if self.tls:
                extra.update(ssl=True, ssl_ca_certs=self.tls[2])
            if self.user:
                extra.update(username=self.user[0], password=self.user[1])
            client = redislib.Redis(host="127.0.0.1", port=self.port, decode_responses=True,
                                    socket_timeout=10, socket_connect_timeout=2, **extra)
            while time.monotonic() < deadline and self.proc.alive():
                try:
                    if client.ping():
                        self.client = client
                        return
                except redislib.exceptions.RedisError:
                    time.sleep(0.05)
            last = self.proc.tail(10, "stdout")
            self.proc.stop(timeout=2)
            if "Address already in use" not in last or not new_port:
                break
        raise TestFailure("redis-server did not answer PING on port %s:\n%s" % (self.port, last))

    def stop(self):
        if self.proc is not None:
            self.proc.stop(timeout=10)

    def restart(self):
        """Stop and start again on the same port and dir (data survives only
        with persist=True)."""
        self.stop()
        self._start(new_port=False)

    def _diagnose(self):
        if self.client is None or not self.proc.alive():
            return "redis %s: stopped" % self.port
        try:
            notes = read_notes(self, validate=False)
            jobs_len = self.client.xlen(JOBS_STREAM) if self.client.exists(JOBS_STREAM) else 0
        except Exception as e:
            return "redis %d: unreadable (%s)" % (self.port, e)
        out = ["redis %d: %s has %d entries; %s has %d notes: %s" % (
            self.port, JOBS_STREAM, jobs_len, EVENTS_STREAM, len(notes), summarize(notes))]
        if notes:
            out.append("last notes:")
            out.extend("  " + format_note(n) for n in notes[-5:])
        return "\n".join(out)


def start_redis(persist=False, tls=None, user=None):
    r = Redis(persist=persist, tls=tls, user=user)
    log("redis-server on port %d" % r.port)
    return r


# --------------------------------------------------------------------------
# receiving SMTP servers

class SmtpServer:
    """aiosmtpd (tests/integration/smtp_server.py) in its own process."""

    def __init__(self, rules=None, slow_seconds=3.0, extra=(), host="127.0.0.1", port=None):
        self.dir = tmpdir().mkdir("smtp-messages")
        self.host = host
        last = ""
        for _ in range(5 if port is None else 1):
            self.port = free_port() if port is None else port
            argv = [PY, os.path.join(HERE, "smtp_server.py"), "--port", self.port,
                    "--dir", self.dir, "--slow-seconds", slow_seconds, "--host", host]
            if rules is not None:
                argv += ["--rules", json.dumps(rules)]
            argv += list(extra)
            self.proc = Proc("aiosmtpd", argv)
            deadline = time.monotonic() + scaled(15)
            while time.monotonic() < deadline and self.proc.alive():
                if "READY" in self.proc.read_stdout():
                    _diagnostics.append(self._diagnose)
                    return
                time.sleep(0.05)
            last = self.proc.tail(20)
            self.proc.stop(timeout=2)
            if "in use" not in last:
                break
        raise TestFailure("aiosmtpd did not start:\n%s" % last)

    def count(self):
        return sum(1 for n in os.listdir(self.dir) if n.endswith(".json"))

    def messages(self):
        """Every message received so far, in arrival order:
        {"mail_from", "rcpt_tos", "content" (bytes), "path", "received_at"}."""
        out = []
        for name in sorted(os.listdir(self.dir)):
            if not name.endswith(".json"):
                continue
            with open(os.path.join(self.dir, name)) as f:
                meta = json.load(f)
            path = os.path.join(self.dir, meta["eml"])
            with open(path, "rb") as f:
                meta["content"] = f.read()
            meta["path"] = path
            out.append(meta)
        return out

    def wait_count(self, n, timeout):
        deadline = time.monotonic() + scaled(timeout)
        while time.monotonic() < deadline:
            if self.count() >= n:
                return self.count()
            time.sleep(0.1)
        return self.count()

    def stop(self):
        return self.proc.stop(timeout=10)

    def _diagnose(self):
        return "aiosmtpd %d: %d messages received; stderr tail:\n%s" % (
            self.port, self.count(), self.proc.tail(10) or "(empty)")


def start_hostile_mx(mode, port, host):
    """A hostile_smtp.py exchanger (MODE: slowbanner, suspendtext, ...) on
    host:port, waited for; raises if it does not come up."""
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hostile_smtp.py")
    proc = Proc("%s-mx" % mode, [sys.executable, script, mode, str(port), host])
    if not wait_port(port, scaled(10), proc, host=host):
        raise TestFailure("the %s MX did not start on %s:%d" % (mode, host, port))
    return proc


def start_aiosmtpd(rules=None, slow_seconds=3.0, extra=(), host="127.0.0.1", port=None):
    """Start the receiving server. Default recipient policy by local part:
    bounce* -> 550 5.1.1, defer* -> 451 4.7.1, slow* -> accepted after
    slow_seconds; see smtp_server.py for custom rules. `extra`: more
    smtp_server.py options (TLS certificate, AUTH)."""
    s = SmtpServer(rules=rules, slow_seconds=slow_seconds, extra=extra, host=host, port=port)
    log("aiosmtpd on port %d, messages in %s" % (s.port, s.dir))
    return s


class Sink:
    """herald-sink (bench/sink) on a free port."""

    def __init__(self, args, host=None, port=None):
        if not os.access(HERALD_SINK, os.X_OK):
            raise TestFailure("herald-sink not found or not executable at %s (HERALD_SINK)"
                              % HERALD_SINK)
        last = ""
        self.host = host or "127.0.0.1"
        for _ in range(5 if port is None else 1):
            self.port = free_port() if port is None else port
            listen = [a.format(port=self.port) for a in shlex.split(SINK_LISTEN)]
            if host:
                listen = ["--listen", ("[%s]:%d" if ":" in host else "%s:%d") % (host, self.port)]
            self.stats_path = tmpdir().join("sink-%d-stats.json" % self.port)
            self.proc = Proc("herald-sink", [HERALD_SINK] + listen +
                             ["--stats", self.stats_path] + [str(a) for a in args])
            if wait_port(self.port, scaled(10), self.proc, host=self.host):
                _diagnostics.append(self._diagnose)
                return
            last = self.proc.tail(20)
            self.proc.stop(timeout=2)
            if "in use" not in last.lower():
                break
        raise TestFailure("herald-sink did not listen on port %d (%s); its output:\n%s" % (
            self.port, " ".join(self.proc.argv), last))

    def stop(self):
        return self.proc.stop(timeout=10)

    def stats(self):
        """The sink's --stats JSON (written at exit: stop it first)."""
        with open(self.stats_path) as f:
            return json.load(f)

    def output(self):
        return self.proc.read_stdout() + self.proc.read_stderr()

    def messages_seen(self):
        """The sink's own count of accepted messages: its --stats file
        (rewritten at exit), else the last `key=N` counter it printed."""
        try:
            with open(self.stats_path) as f:
                return int(json.load(f)["messages"])
        except (OSError, ValueError, KeyError):
            pass
        found = None
        for m in re.finditer(r"\b(accepted|messages|delivered|received)[=:]\s*(\d+)",
                             self.output()):
            found = int(m.group(2))
        return found

    def _diagnose(self):
        return "herald-sink %d: output tail:\n%s" % (self.port, "\n".join(
            self.output().splitlines()[-10:]))


def sink_record(path):
    """What `herald-sink --record FILE` wrote: (arrival unix ms, client IP)
    per accepted message, in file order."""
    out = []
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2:
                out.append((int(parts[0]), parts[1]))
    return out


def start_sink(args=(), host=None, port=None):
    s = Sink(args, host=host, port=port)
    log("herald-sink on port %d" % s.port)
    return s


# --------------------------------------------------------------------------
# config

_PLAIN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_./@:+-]*$")
_YAML_WORDS = {"true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"}


def _yaml_scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if v is None:
        return "null"
    s = str(v)
    if _PLAIN.match(s) and s.lower() not in _YAML_WORDS and ": " not in s \
            and not s.endswith(":") and not re.match(r"^[0-9.]+$", s):
        return s
    return json.dumps(s, ensure_ascii=False)  # JSON strings are YAML double-quoted scalars


def to_yaml(obj, indent=0):
    """Block-style YAML for dicts of dicts/lists/scalars; lists of scalars
    are written in flow style ([1s, 5s])."""
    pad = "  " * indent
    lines = []
    for key, val in obj.items():
        k = _yaml_scalar(key)
        if isinstance(val, dict):
            if val:
                lines.append("%s%s:" % (pad, k))
                lines.append(to_yaml(val, indent + 1))
            else:
                lines.append("%s%s: {}" % (pad, k))
        elif isinstance(val, (list, tuple)):
            if all(not isinstance(x, (dict, list, tuple)) for x in val):
                lines.append("%s%s: [%s]" % (pad, k, ", ".join(_yaml_scalar(x) for x in val)))
            else:
                lines.append("%s%s:" % (pad, k))
                for x in val:
                    if isinstance(x, dict):
                        body = to_yaml(x, indent + 2).lstrip()
                        lines.append("%s  - %s" % (pad, body))
                    else:
                        lines.append("%s  - %s" % (pad, _yaml_scalar(x)))
        else:
            lines.append("%s%s: %s" % (pad, k, _yaml_scalar(val)))
    return "\n".join(lines)


def merged(base, over):
    """Deep merge: dicts merge key by key, anything else in `over` replaces."""
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merged(out[k], v)
        else:
            out[k] = v
    return out


def base_config(redis, smtp_port, **overrides):
    """The configuration every test starts from: workers 2, a static route
    for every domain to the test SMTP server, tenants acme and beta."""
    cfg = {
        "redis": {"url": redis.url},
        "engine": {"workers": 2, "ehlo": "test.herald", "claim_idle": "2s"},
        "routes": {"*": "127.0.0.1:%d" % smtp_port},
        "tenants": {
            "acme": {"from": "reminders@acme.test"},
            "beta": {"from": "desk@beta.test"},
        },
        "delivery": {"retry": ["1s"], "max_age": "10s", "timeouts": {"idle": "2s"}},
        "providers": {"default": {"connections": 10, "messages_per_connection": 100}},
    }
    return merged(cfg, overrides)


def write_config(cfg, name="herald.yaml"):
    """Write a herald config (a dict, emitted as YAML, or literal text) into
    the temp dir; returns its path."""
    text = cfg if isinstance(cfg, str) else to_yaml(cfg) + "\n"
    path = tmpdir().join(name)
    with open(path, "w") as f:
        f.write(text)
    return path


# --------------------------------------------------------------------------
# herald

_IOURING_GONE = re.compile(
    r"io_uring.*(not supported|unavailable|disabled|not permitted|not implemented|"
    r"ENOSYS|EPERM|operation not permitted)|"
    r"(not supported|unavailable|disabled|not permitted|ENOSYS|EPERM).*io_uring", re.I)


def io_uring_available():
    """Probe io_uring_setup(2) directly: False when the kernel lacks it or
    forbids it (ENOSYS, EPERM, io_uring_disabled sysctl)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        params = ctypes.create_string_buffer(120)  # struct io_uring_params
        fd = libc.syscall(425, 4, params)          # __NR_io_uring_setup
        if fd >= 0:
            os.close(fd)
            return True
        return ctypes.get_errno() not in (errno.ENOSYS, errno.EPERM)
    except Exception:
        return True  # cannot tell: let herald itself say


class Herald(Proc):
    """A running `herald run -c CFG`."""

    def __init__(self, config_path, extra_args=(), env=None):
        self.config_path = config_path
        super().__init__("herald", [HERALD_BIN, "run", "-c", config_path] + list(extra_args),
                         env=env)
        _diagnostics.append(self._diagnose)

    def check(self):
        """Raise if herald has exited (Skip when it says io_uring is missing)."""
        rc = self.returncode
        if rc is None:
            return
        err = self.read_stderr()
        if rc != 0 and _IOURING_GONE.search(err):
            raise Skip("herald cannot use io_uring here: %s" % err.strip().splitlines()[-1])
        raise TestFailure("herald exited unexpectedly with status %s" % rc)

    def stop(self, timeout=30.0, sig=signal.SIGTERM, expect_clean=True):
        """SIGTERM and wait for the drain; with expect_clean, anything but a
        prompt exit 0 is a failure."""
        if not self.alive():
            rc = super().stop(timeout=1)
            if expect_clean and rc != 0:
                self.check()
            return rc
        self.send_signal(sig)
        rc = self.wait(scaled(timeout))
        if rc is None:
            super().kill()
            if expect_clean:
                raise TestFailure("herald did not exit within %.0fs of SIGTERM (killed)"
                                  % scaled(timeout))
            return self.returncode
        super().stop(timeout=1)
        if expect_clean and rc != 0:
            raise TestFailure("herald exited with status %s after SIGTERM (expected 0)" % rc)
        return rc

    def _diagnose(self):
        return "%s\nherald stderr tail (%s):\n%s" % (self.describe(), self.stderr_path,
                                                   self.tail(40))


def run_herald(config_path, extra_args=(), env=None):
    if not os.access(HERALD_BIN, os.X_OK):
        raise TestFailure("herald binary not found at %s (HERALD_BIN)" % HERALD_BIN)
    if not io_uring_available():
        raise Skip("io_uring_setup is not available in this kernel/container")
    h = Herald(config_path, extra_args, env=env)
    log("herald run started, pid %d" % h.pid)
    return h


def run_nodes(cfg, n, name="node"):
    """Start n herald processes from one config, as separate hosts would run
    them: each its own consumer (name0, name1, ...) and config file. Returns
    [(Herald, config path)]."""
    nodes = []
    for k in range(n):
        node = merged(cfg, {"engine": {"consumer": "%s%d" % (name, k)}})
        path = write_config(node, "%s%d.yaml" % (name, k))
        nodes.append((run_herald(path), path))
    return nodes


def delivered_by(herald):
    """Messages a stopped herald process delivered, from its workers'
    event=worker_stopped lines."""
    err = herald.read_stderr()
    return sum(int(part.split("delivered=")[1].split()[0])
               for part in err.split("event=worker_stopped")[1:])


def herald_cli(args, input=None, timeout=60):
    """Run a herald subcommand to completion: CompletedProcess with str
    stdout/stderr (undecodable bytes replaced)."""
    if not os.access(HERALD_BIN, os.X_OK):
        raise TestFailure("herald binary not found at %s (HERALD_BIN)" % HERALD_BIN)
    if isinstance(input, str):
        input = input.encode("utf-8")
    try:
        cp = subprocess.run([HERALD_BIN] + [str(a) for a in args], input=input,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            timeout=scaled(timeout), preexec_fn=_die_with_parent)
    except subprocess.TimeoutExpired:
        raise TestFailure("herald %s did not finish within %.0fs" % (
            " ".join(map(str, args)), scaled(timeout)))
    cp.stdout = cp.stdout.decode("utf-8", "replace")
    cp.stderr = cp.stderr.decode("utf-8", "replace")
    return cp


def enqueue(config_path, jobs, timeout=120):
    """`herald enqueue -c CFG` with one JSON object per line on stdin;
    checks it printed "enqueued N". Returns N."""
    data = "".join(json.dumps(j, ensure_ascii=False) + "\n" for j in jobs)
    cp = herald_cli(["enqueue", "-c", config_path], input=data, timeout=timeout)
    m = re.search(r"enqueued (\d+)", cp.stdout)
    if cp.returncode != 0 or not m:
        raise TestFailure("herald enqueue of %d jobs failed: exit %d\nstdout: %s\nstderr: %s" % (
            len(jobs), cp.returncode, cp.stdout[-2000:], cp.stderr[-2000:]))
    if int(m.group(1)) != len(jobs):
        raise TestFailure("herald enqueue printed %r for %d jobs" % (m.group(0), len(jobs)))
    return int(m.group(1))


def xadd_jobs(redis, jobs, stream=JOBS_STREAM):
    """XADD jobs straight into the stream, as a platform would (no CLI-side
    validation). Returns the stream ids in order."""
    pipe = redis.client.pipeline(transaction=False)
    for j in jobs:
        pipe.xadd(stream, {k: v for k, v in j.items()})
    return pipe.execute()


# --------------------------------------------------------------------------
# case notes

_NOTE_SCHEMA = None


def check_note(note):
    """Raise TestFailure when a note herald wrote breaks schemas/note.schema.json
    (skipped where python3-jsonschema is missing)."""
    global _NOTE_SCHEMA
    if _NOTE_SCHEMA is None:
        try:
            import jsonschema
        except ImportError:
            _NOTE_SCHEMA = False
            return
        with open(os.path.join(SRC, "schemas", "note.schema.json")) as f:
            _NOTE_SCHEMA = jsonschema.Draft202012Validator(json.load(f))
    if not _NOTE_SCHEMA:
        return
    fields = {k: v for k, v in note.items() if k != "_id"}
    errors = sorted(_NOTE_SCHEMA.iter_errors(fields), key=lambda e: list(e.path))
    if errors:
        raise TestFailure("note %s breaks schemas/note.schema.json: %s (note: %s)"
                          % (note.get("_id"), errors[0].message, fields))


def read_notes(redis, stream=EVENTS_STREAM, after="-", page=2000, validate=True):
    """All notes (dicts, plus "_id") in stream order, each checked against
    schemas/note.schema.json (validate=False for a test that writes notes of
    its own into the stream)."""
    out = []
    start = after
    client = redis.client if hasattr(redis, "client") else redis
    while True:
        batch = client.xrange(stream, min=start, max="+", count=page)
        for sid, fields in batch:
            d = dict(fields)
            d["_id"] = sid
            if validate and stream == EVENTS_STREAM:
                check_note(d)
            out.append(d)
        if len(batch) < page:
            return out
        start = "(" + batch[-1][0]


def summarize(notes):
    c = collections.Counter(n.get("event", "?") for n in notes)
    return " ".join("%s=%d" % kv for kv in sorted(c.items())) or "(none)"


def format_note(n):
    keys = ("event", "job", "tenant", "to", "attempt", "code", "enhanced", "reply",
            "category", "field", "reason", "latency_ms", "next_attempt_at")
    parts = []
    for k in keys:
        v = n.get(k, "")
        if v == "":
            continue
        if len(v) > 100:
            v = v[:97] + "..."
        parts.append("%s=%s" % (k, json.dumps(v, ensure_ascii=False) if " " in v else v))
    return " ".join(parts)


def is_terminal(note):
    return note.get("event") != "deferred"


def wait_notes(redis, count, timeout, herald=None, stream=EVENTS_STREAM, what="notes"):
    """Poll XLEN until it reaches count; bounded by timeout (scaled). Fails
    early if herald dies. Returns the final length."""
    deadline = time.monotonic() + scaled(timeout)
    n = 0
    while True:
        n = redis.client.xlen(stream)
        if n >= count:
            return n
        if herald is not None:
            herald.check()
        if time.monotonic() >= deadline:
            raise TestFailure("timed out after %.0fs waiting for %d %s on %s; saw %d" % (
                scaled(timeout), count, what, stream, n))
        time.sleep(0.1)


def wait_terminal(redis, job_ids, timeout, herald=None, stream=EVENTS_STREAM):
    """Wait until every id in job_ids has at least one terminal note.
    Returns all notes read. Reads the stream incrementally."""
    want = set(job_ids)
    done = set()
    notes = []
    last = "-"
    deadline = time.monotonic() + scaled(timeout)
    while True:
        new = read_notes(redis, stream, after=last)
        if new:
            last = "(" + new[-1]["_id"]
            notes.extend(new)
            for n in new:
                if is_terminal(n) and n.get("job") in want:
                    done.add(n["job"])
        if len(done) == len(want):
            return notes
        if herald is not None:
            herald.check()
        if time.monotonic() >= deadline:
            missing = sorted(want - done)
            raise TestFailure("timed out after %.0fs: %d of %d jobs have no terminal note "
                              "(e.g. %s); notes so far: %s" % (
                                  scaled(timeout), len(missing), len(want),
                                  ", ".join(missing[:5]), summarize(notes)))
        time.sleep(0.2)


def notes_by_job(notes):
    out = collections.defaultdict(list)
    for n in notes:
        out[n.get("job", "")].append(n)
    return out


# --------------------------------------------------------------------------
# assertions and the test entry point

class Failures:
    """Collect many failed expectations, then report them together (the
    first `show` of them in full)."""

    def __init__(self, show=20):
        self.items = []
        self.show = show

    def add(self, msg):
        self.items.append(msg)

    def check(self, cond, msg):
        if not cond:
            self.add(msg)
        return cond

    def raise_if_any(self, title):
        if not self.items:
            return
        shown = "\n".join("  - " + m for m in self.items[:self.show])
        more = "" if len(self.items) <= self.show else "\n  ... and %d more" % (
            len(self.items) - self.show)
        raise TestFailure("%s: %d problem(s)\n%s%s" % (title, len(self.items), shown, more))


def check(cond, msg):
    if not cond:
        raise TestFailure(msg)


def _print_diagnostics():
    print("---- diagnostics ----", flush=True)
    for d in _diagnostics:
        try:
            text = d()
        except Exception as e:
            text = "(diagnostic failed: %s)" % e
        if text:
            print(text, flush=True)


def main(test_fn):
    """Run test_fn() and exit 0 (pass), 1 (fail) or 77 (skip)."""
    def on_term(signum, _frame):
        raise SystemExit("killed by signal %d" % signum)

    signal.signal(signal.SIGTERM, on_term)
    name = os.path.basename(sys.argv[0])
    log("%s: herald=%s time-scale=%g" % (name, HERALD_BIN, TIME_SCALE))
    rc = 1
    try:
        test_fn()
        rc = 0
        log("PASS %s" % name)
    except Skip as e:
        rc = SKIP
        log("SKIP %s: %s" % (name, e))
    except TestFailure as e:
        log("FAIL %s: %s" % (name, e))
        _print_diagnostics()
    except BaseException as e:  # a harness bug or a signal: still a failure, with context
        log("FAIL %s: %s: %s" % (name, type(e).__name__, e))
        traceback.print_exc()
        _print_diagnostics()
    finally:
        if rc == 1 and _tmp is not None:
            _tmp.keep = True
        _stop_all()
    sys.exit(rc)
