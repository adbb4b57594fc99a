"""contrib/docker/seccomp.json lets herald run: the container runtimes'
default profiles refuse io_uring_setup/enter/register, which herald needs
for everything, so the Dockerfile's docs point at this profile instead.
No container runtime here, so the test checks what the runtime would
enforce: herald runs under strace through start, a delivery burst, a
scrape, a reload and a drain, plus check-config and enqueue, and every
system call it made is allowed by the profile (which is valid JSON with
an allow list and a refusing default)."""

import json
import os
import re
import shutil
import signal
import subprocess
import time

import harness as h


def syscalls(path):
    names = set()
    with open(path) as f:
        for line in f:
            m = re.match(r"^\d+\s+([a-z_0-9]+)\(", line)
            if m:
                names.add(m.group(1))
    return names


def run():
    if not shutil.which("strace"):
        raise h.Skip("strace not installed")
    ldd = subprocess.run(["ldd", h.HERALD_BIN], capture_output=True, text=True).stdout
    if "libasan" in ldd or "libubsan" in ldd:
        raise h.Skip("the profile is for release builds; the sanitizers make calls of their own")
    fails = h.Failures()
    prof = json.load(open(os.path.join(h.SRC, "contrib", "docker", "seccomp.json")))
    fails.check(prof.get("defaultAction") == "SCMP_ACT_ERRNO", "the default refuses")
    allowed = set()
    for rule in prof.get("syscalls", []):
        if rule.get("action") == "SCMP_ACT_ALLOW":
            allowed |= set(rule.get("names", []))
    for needed in ("io_uring_setup", "io_uring_enter", "io_uring_register"):
        fails.check(needed in allowed, "%s allowed" % needed)

    smtp = h.start_aiosmtpd()
    redis = h.start_redis()
    port = h.free_port()
    cfg = h.base_config(redis, smtp.port)
    cfg["metrics"] = {"listen": "127.0.0.1:%d" % port}
    path = h.write_config(cfg)
    trace = h.tmpdir().join("herald.strace")
    probe = subprocess.run(["strace", "-f", "-qq", "-o", os.devnull, "true"],
                           capture_output=True, timeout=30)
    if probe.returncode != 0:
        raise h.Skip("strace cannot trace here: %s" % probe.stderr.decode()[-200:])
    p = h.Proc("strace-herald", ["strace", "-f", "-qq", "-o", trace, h.HERALD_BIN, "run", "-c",
                                 path])
    h.wait_port(port, h.scaled(20), p)
    ids = ["t%d" % i for i in range(30)]
    h.xadd_jobs(redis, [{"id": i, "tenant": "acme", "to": "%s@clinic.test" % i, "subject": "S",
                         "text": "t"} for i in ids])
    h.wait_terminal(redis, ids, timeout=h.scaled(60))
    subprocess.run(["curl", "-s", "--max-time", "5", "http://127.0.0.1:%d/metrics" % port],
                   stdout=subprocess.DEVNULL, timeout=30)
    os.kill(p.pid, signal.SIGHUP)  # strace passes it on
    time.sleep(1)
    p.stop(timeout=h.scaled(30))
    used = syscalls(trace)
    for args in (["check-config", "-c", path],
                 ["enqueue", "-c", path, "--tenant", "acme", "--to", "a@clinic.test",
                  "--subject", "s", "--text", "t"]):
        t2 = h.tmpdir().join("cli.strace")
        subprocess.run(["strace", "-f", "-qq", "-o", t2, h.HERALD_BIN] + args,
                       capture_output=True, timeout=60)
        used |= syscalls(t2)
    fails.check(len(used) > 20, "strace saw herald's calls: %s" % sorted(used))
    missing = sorted(used - allowed)
    fails.check(not missing, "system calls herald made that the profile refuses: %s" % missing)
    fails.raise_if_any("seccomp profile")


if __name__ == "__main__":
    h.main(run)
