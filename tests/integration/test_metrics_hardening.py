"""The metrics endpoint (metrics.listen) against hostile clients and
producers, each case with a herald of its own:

- stuck clients: one that sends a request and never reads a response
  larger than the socket buffers it leaves, and a hundred that connect and
  say nothing; a scrape next to them still answers, idle clients are
  dropped, a reader that never reads is cut off, and SIGTERM stops herald
  promptly with a stuck reader connected;
- unknown tenants: 300 jobs naming random tenants add one `tenant="-"` row,
  not 300 (metrics and `herald status`);
- metrics.token_file: no or a wrong bearer token gets 401, the right one
  200; a token file that cannot be read stops herald from starting."""

import json
import os
import random
import socket
import subprocess
import time

import harness as h
from test_metrics import scrape, value

N_TENANTS = 200    # configured, each with one row: a body far larger than
                   # what the kernel buffers for a reader that never reads
SLOW_BUFFERED = 40000  # about what loopback buffers for the slow reader below


def slow_reader(port, path="/metrics"):
    """A client that sends its request and never reads: a tiny receive
    buffer and segment size so the server's send blocks after ~40 KB."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 88)
    s.connect(("127.0.0.1", port))
    s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path).encode())
    return s


def closed_within(sock, seconds):
    """Whether the server closed sock within `seconds` (EOF or reset)."""
    sock.settimeout(seconds)
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            if not sock.recv(65536):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False
    return False


def curl(port, path="/metrics", headers=()):
    argv = ["curl", "-sS", "--max-time", "%d" % h.scaled(5), "-o", "/dev/null",
            "-w", "%{http_code}"]
    for hd in headers:
        argv += ["-H", hd]
    cp = subprocess.run(argv + ["http://127.0.0.1:%d%s" % (port, path)],
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=h.scaled(10))
    return int(cp.stdout.decode() or 0)


def start(redis, smtp, metrics, **over):
    """herald with metrics (plus listen) and config overrides, once its
    endpoint answers: (herald, port, config path)."""
    port = h.free_port()
    cfg = h.base_config(redis, smtp.port, metrics=dict(metrics, listen="127.0.0.1:%d" % port),
                        **over)
    path = h.write_config(cfg, os.path.basename(h.tmpdir().unique("herald.yaml")))
    herald = h.run_herald(path)
    h.wait_port(port, h.scaled(15), herald)
    return herald, port, path


def stuck_clients(fails, redis, smtp):
    tenants = {"t%03d" % i: {"from": "desk@t%03d.test" % i} for i in range(N_TENANTS)}
    herald, port, _ = start(redis, smtp, {}, tenants=tenants)
    # One rejected job per tenant gives each its rows in the exposition.
    jobs = [{"id": "s%d" % i, "tenant": "t%03d" % i, "to": "not an address", "subject": "x",
             "text": "y"} for i in range(N_TENANTS)]
    h.xadd_jobs(redis, jobs)
    h.wait_terminal(redis, [j["id"] for j in jobs], timeout=h.scaled(60), herald=herald)
    code, body = scrape(port)
    fails.check(code == 200, "stuck clients: first scrape HTTP %d" % code)
    fails.check(len(body) > 2 * SLOW_BUFFERED,
                "stuck clients: body of %d bytes is too small to block a non-reader; the case "
                "proves nothing" % len(body))

    reader = slow_reader(port)
    time.sleep(0.5)  # the server has its request and is writing
    idle = []
    try:
        for _ in range(100):
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=h.scaled(5)))
    except OSError as e:
        fails.add("stuck clients: idle client %d could not connect: %s" % (len(idle) + 1, e))
    t0 = time.monotonic()
    code, _ = scrape(port)
    took = time.monotonic() - t0
    fails.check(code == 200, "stuck clients: a scrape beside a non-reader and 100 idle clients "
                "got HTTP %d after %.1fs" % (code, took))
    h.log("scrape beside stuck clients: HTTP %d in %.2fs" % (code, took))
    fails.check(idle and closed_within(idle[-1], h.scaled(15)),
                "stuck clients: an idle client was not dropped within %.0fs" % h.scaled(15))
    for s in idle + [reader]:
        s.close()

    # A reader that never reads is cut off at the response deadline (5 s):
    # what it finds afterwards is what the kernel had buffered, not the body.
    reader = slow_reader(port)
    time.sleep(10)
    reader.settimeout(h.scaled(10))
    got, eof = 0, False
    try:
        while True:
            k = len(reader.recv(65536))
            if not k:
                eof = True
                break
            got += k
    except (ConnectionResetError, socket.timeout):
        eof = True
    reader.close()
    h.log("reader idle for 10s: %d of %d bytes, eof %s" % (got, len(body), eof))
    fails.check(eof and got < len(body),
                "stuck clients: a reader idle for 10s still got %d of %d bytes (eof %s): the "
                "response was not cut off" % (got, len(body), eof))

    # Stop with a reader stuck mid-response and an idle client connected.
    reader = slow_reader(port)
    quiet = socket.create_connection(("127.0.0.1", port))
    time.sleep(0.5)
    herald.check()
    t0 = time.monotonic()
    herald.send_signal(15)
    rc = herald.wait(h.scaled(15))
    took = time.monotonic() - t0
    if rc is None:
        herald.kill()
    fails.check(rc == 0, "stuck clients: SIGTERM with a stuck reader connected: exit %s after "
                "%.1fs (None = still running, killed)" % (rc, took))
    h.log("stop with stuck clients: exit %s in %.2fs" % (rc, took))
    reader.close()
    quiet.close()


def unknown_tenants(fails, redis, smtp):
    herald, port, path = start(redis, smtp, {})
    rnd = random.Random(7)
    jobs = [{"id": "u%d" % i, "tenant": "rnd%08x" % rnd.getrandbits(32),
             "to": "pat%d@clinic.test" % i, "subject": "x", "text": "y"} for i in range(300)]
    jobs += [{"id": "k%d" % i, "tenant": "acme", "to": "pat%d@clinic.test" % i,
              "subject": "Reminder", "text": "9:00"} for i in range(3)]
    h.xadd_jobs(redis, jobs)
    h.wait_terminal(redis, [j["id"] for j in jobs], timeout=h.scaled(60), herald=herald)
    time.sleep(h.scaled(2))  # the status document is published once a second
    code, body = scrape(port)
    fails.check(code == 200, "unknown tenants: HTTP %d" % code)
    labels = set()
    for line in body.splitlines():
        if line.startswith(("herald_notes_total{", "herald_in_flight{")):
            labels.add(line.split('tenant="', 1)[1].split('"', 1)[0])
    configured = 2  # acme, beta (base_config)
    fails.check(len(labels) <= configured + 1,
                "unknown tenants: %d tenant rows, want at most %d: %s"
                % (len(labels), configured + 1, sorted(labels)[:8]))
    fails.check("rnd" not in body, "unknown tenants: a random tenant name is in the metrics")
    got = value(body, "herald_notes_total", tenant="-", event="rejected")
    fails.check(got == 300, "unknown tenants: tenant=\"-\" rejected = %s, want 300" % got)
    got = value(body, "herald_notes_total", tenant="acme", event="delivered")
    fails.check(got == 3, "unknown tenants: acme delivered = %s, want 3" % got)

    st = h.herald_cli(["status", "-c", path, "--json"])
    fails.check(st.returncode == 0, "unknown tenants: herald status: %s" % st.stderr)
    doc = json.loads(st.stdout or "{}")
    for proc in doc.get("processes", []):
        names = [t.get("name") for t in proc.get("tenants", [])]
        fails.check(len(names) <= configured + 1,
                    "unknown tenants: herald status lists %d tenants" % len(names))
    herald.check()
    herald.stop()


def token(fails, redis, smtp):
    tok = "Zm9v.bar-baz_0123456789"
    tok_path = h.tmpdir().join("metrics.token")
    with open(tok_path, "w") as f:
        f.write(tok + "\n")
    os.chmod(tok_path, 0o600)
    herald, port, _ = start(redis, smtp, {"token_file": tok_path})
    cases = [
        ([], 401, "no Authorization"),
        (["Authorization: Bearer wrong"], 401, "a wrong token"),
        (["Authorization: Bearer " + tok[:-1]], 401, "a prefix of the token"),
        (["Authorization: Bearer " + tok + "x"], 401, "the token and more"),
        (["Authorization: Basic " + tok], 401, "another scheme"),
        (["Authorization: Bearer " + tok], 200, "the token"),
        (["authorization: bearer " + tok], 200, "the token, lower-case names"),
    ]
    for headers, want, what in cases:
        got = curl(port, headers=headers)
        fails.check(got == want, "token: %s: HTTP %d, want %d" % (what, got, want))
    got = curl(port, path="/nope")
    fails.check(got == 401, "token: unknown path without a token: HTTP %d, want 401" % got)
    herald.check()
    herald.stop()

    # A token file that cannot be read must not leave an open endpoint.
    cfg = h.base_config(redis, smtp.port, metrics={"listen": "127.0.0.1:%d" % h.free_port(),
                                                    "token_file": tok_path + ".missing"})
    bad = h.run_herald(h.write_config(cfg, "herald-badtoken.yaml"))
    rc = bad.wait(h.scaled(20))
    if rc is None:
        bad.kill()
    fails.check(rc not in (None, 0), "token: unreadable token_file: exit %s, want a refusal" % rc)
    fails.check("token_file" in bad.read_stderr(),
                "token: unreadable token_file: stderr does not name it: %s" % bad.tail(5))


def run():
    fails = h.Failures()
    smtp = h.start_aiosmtpd()
    for case in (stuck_clients, unknown_tenants, token):
        redis = h.start_redis()
        h.log("case %s" % case.__name__)
        case(fails, redis, smtp)
        redis.stop()
    fails.raise_if_any("metrics hardening")


if __name__ == "__main__":
    h.main(run)
