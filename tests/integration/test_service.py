"""herald under a service manager.

  - sd_notify: with NOTIFY_SOCKET naming a datagram socket, `herald run`
    sends READY=1 with a STATUS= once it runs, RELOADING=1 (with
    MONOTONIC_USEC) then READY=1 and a STATUS naming the new generation on
    SIGHUP, a STATUS saying the reload was refused for a broken config, and
    STOPPING=1 on SIGTERM; an abstract socket ("@name") works too;
  - without -c, commands read $HERALD_CONFIG (and say which file they
    tried when it is missing);
  - `herald --version` names the project version and the commit;
  - with JOURNAL_STREAM naming stderr, log lines carry the journal's
    "<N>" priority prefix (6 info, 4 warning, 3 error); without it, none."""

import os
import re
import signal
import socket
import subprocess
import time

import harness as h


def recv_until(sock, want, timeout):
    """Datagrams until one contains `want`; returns all of them."""
    got = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            got.append(sock.recv(4096).decode())
        except socket.timeout:
            break
        if want in got[-1]:
            return got
    raise h.TestFailure("no %r from herald; got %r" % (want, got))


def run():
    fails = h.Failures()
    smtp = h.start_aiosmtpd()
    redis = h.start_redis()
    cfg = h.base_config(redis, smtp.port)
    path = h.write_config(cfg)

    sock_path = h.tmpdir().join("notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(sock_path)
    herald = h.run_herald(path, env={"NOTIFY_SOCKET": sock_path})
    msgs = recv_until(sock, "READY=1", h.scaled(20))
    fails.check(any("STATUS=running" in m for m in msgs), "READY with a STATUS: %r" % msgs)

    os.kill(herald.pid, signal.SIGHUP)
    msgs = recv_until(sock, "READY=1", h.scaled(20))
    fails.check(re.search(r"RELOADING=1\nMONOTONIC_USEC=\d+", msgs[0]) is not None,
                "SIGHUP first says RELOADING=1 with MONOTONIC_USEC: %r" % msgs)
    fails.check("STATUS=running, reloaded: generation 2" in msgs[-1],
                "then READY=1 and the new generation: %r" % msgs)

    with open(path, "a") as f:
        f.write("engine: [this is not a mapping\n")
    os.kill(herald.pid, signal.SIGHUP)
    msgs = recv_until(sock, "READY=1", h.scaled(20))
    fails.check("reload refused" in msgs[-1] and "herald.yaml" in msgs[-1],
                "a broken config: READY=1 again, STATUS says the reload was refused and "
                "where: %r" % msgs)

    herald.send_signal(signal.SIGTERM)
    msgs = recv_until(sock, "STOPPING=1", h.scaled(20))
    herald.stop()
    sock.close()

    # A SIGHUP while herald is still starting (ASan makes the start slow)
    # is held until the main loop and taken as a reload; before, its default
    # action ended the process.
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    early_path = h.tmpdir().join("early.sock")
    sock.bind(early_path)
    h.write_config(cfg, "early.yaml")
    herald = h.run_herald(h.tmpdir().join("early.yaml"), env={"NOTIFY_SOCKET": early_path})
    time.sleep(0.2)
    os.kill(herald.pid, signal.SIGHUP)
    msgs = recv_until(sock, "READY=1", h.scaled(20))
    time.sleep(1)
    fails.check(herald.alive(), "an early SIGHUP must not end herald")
    herald.stop()
    sock.close()

    # An abstract socket name.
    name = "herald-test-%d" % os.getpid()
    asock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    asock.bind("\0" + name)
    h.write_config(cfg, "good.yaml")
    herald = h.run_herald(h.tmpdir().join("good.yaml"), env={"NOTIFY_SOCKET": "@" + name})
    recv_until(asock, "READY=1", h.scaled(20))
    herald.stop()
    asock.close()

    # The default config path.
    env = dict(os.environ, HERALD_CONFIG=h.tmpdir().join("good.yaml"))
    r = subprocess.run([h.HERALD_BIN, "check-config"], env=env, capture_output=True, text=True,
                       timeout=60)
    fails.check(r.returncode == 0 and "config ok: " + env["HERALD_CONFIG"] in r.stdout,
                "check-config without -c reads $HERALD_CONFIG: %d %r" % (r.returncode,
                                                                       r.stderr[-300:]))
    env["HERALD_CONFIG"] = h.tmpdir().join("missing.yaml")
    r = subprocess.run([h.HERALD_BIN, "status"], env=env, capture_output=True, text=True,
                       timeout=60)
    fails.check(r.returncode == 2 and "missing.yaml" in r.stderr and "HERALD_CONFIG" in r.stderr,
                "a missing default config names the file and where it came from: %d %r"
                % (r.returncode, r.stderr))

    r = subprocess.run([h.HERALD_BIN, "--version"], capture_output=True, text=True, timeout=60)
    fails.check(r.returncode == 0 and re.match(r"herald \d+\.\d+\.\d+ \(commit [0-9a-f]{7,}",
                                               r.stdout),
                "--version: %r" % r.stdout)

    # Journal priority prefix: stderr is the file JOURNAL_STREAM names.
    err_path = h.tmpdir().join("journal.stderr")
    with open(err_path, "wb") as err:
        st = os.fstat(err.fileno())
        env = dict(os.environ, JOURNAL_STREAM="%d:%d" % (st.st_dev, st.st_ino))
        p = subprocess.Popen([h.HERALD_BIN, "run", "-c", h.tmpdir().join("good.yaml")],
                             env=env, stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + h.scaled(20)
        while time.monotonic() < deadline and "event=started" not in open(err_path).read():
            time.sleep(0.1)
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=h.scaled(30))
    lines = [l for l in open(err_path).read().splitlines() if l]
    fails.check(lines and all(re.match(r"<[3467]>ts=", l) for l in lines),
                "every line with a priority prefix: %r" % lines[:3])
    fails.check(any(l.startswith("<6>") and "event=started" in l for l in lines),
                "info is <6>: %r" % lines[:3])
    plain = [l for l in open(herald.stderr_path).read().splitlines() if l]
    fails.check(plain and plain[0].startswith("ts="), "no prefix without the journal: %r"
                % plain[:1])
    fails.raise_if_any("service")


if __name__ == "__main__":
    h.main(run)
