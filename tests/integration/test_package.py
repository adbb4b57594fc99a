"""The install rules and the Debian package.

  - `cmake --install` into a throwaway prefix puts the binary, the config
    at etc/herald/herald.yaml, the templates, the systemd unit and the docs
    where the unit expects them;
  - the unit passes `systemd-analyze verify` (when systemd-analyze is
    here), with Type=notify, RestartPreventExitStatus=2 and the io_uring
    syscalls allowed;
  - scripts/package builds a .deb whose control names the package, marks
    /etc/herald/herald.yaml a conffile and carries the postinst that adds
    the herald user; extracted into a throwaway root, its herald runs: it
    checks the packaged example config and, pointed at this test's Redis
    and receiver, delivers a job."""

import os
import re
import shutil
import subprocess

import harness as h


def run():
    fails = h.Failures()
    build = os.path.dirname(h.HERALD_BIN)
    # DESTDIR, not --prefix: the config's path is absolute (/etc with the
    # /usr prefix) and must land under the throwaway root too.
    prefix = h.tmpdir().join("destdir")
    r = subprocess.run(["cmake", "--install", build], capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, DESTDIR=prefix))
    h.check(r.returncode == 0, "cmake --install failed: %s" % r.stderr[-500:])
    found = {}
    for dirpath, _, files in os.walk(prefix):
        for f in files:
            found[os.path.relpath(os.path.join(dirpath, f), prefix)] = True
    for tail in ("bin/herald", "lib/systemd/system/herald.service", "share/doc/herald/config.md",
                 "share/doc/herald/operations.md", "etc/herald/herald.yaml"):
        fails.check(any(p.endswith(tail) for p in found), "installed: .../%s (have %s)"
                    % (tail, sorted(found)[:8]))
    binary_in = [p for p in found if p.endswith("bin/herald")]
    prefix_bin = os.path.join(prefix, binary_in[0]) if binary_in else h.HERALD_BIN

    unit = os.path.join(h.SRC, "contrib", "systemd", "herald.service")
    text = open(unit).read()
    for want in ("Type=notify", "RestartPreventExitStatus=2", "ExecReload=/bin/kill -HUP $MAINPID",
                 "User=herald", "io_uring_setup io_uring_enter io_uring_register"):
        fails.check(want in text, "the unit has %s" % want)
    if shutil.which("systemd-analyze"):
        # Verify a copy whose binary exists here.
        copy = h.tmpdir().join("herald.service")
        with open(copy, "w") as f:
            f.write(text.replace("/usr/bin/herald", prefix_bin))
        r = subprocess.run(["systemd-analyze", "verify", copy], capture_output=True, text=True,
                           timeout=60)
        bad = [l for l in (r.stdout + r.stderr).splitlines()
               if "herald.service" in l and "User" not in l and "Documentation" not in l]
        fails.check(not bad, "systemd-analyze verify: %s" % bad)

    pkg_dir = h.tmpdir().join("package")
    r = subprocess.run([os.path.join(h.SRC, "scripts", "package"), pkg_dir],
                       capture_output=True, text=True, timeout=900)
    h.check(r.returncode == 0, "scripts/package failed: %s %s" % (r.stdout[-300:],
                                                                   r.stderr[-800:]))
    deb = r.stdout.strip().splitlines()[-1]
    info = subprocess.run(["dpkg-deb", "-I", deb], capture_output=True, text=True).stdout
    fails.check(re.search(r"Package: herald", info) and "conffiles" in info and "postinst" in info,
                "control of %s: %s" % (deb, info[-600:]))
    ctl = h.tmpdir().join("control")
    subprocess.run(["dpkg-deb", "-e", deb, ctl], check=True)
    fails.check(open(os.path.join(ctl, "conffiles")).read().strip() == "/etc/herald/herald.yaml",
                "herald.yaml is a conffile")
    fails.check("adduser --system" in open(os.path.join(ctl, "postinst")).read(),
                "the postinst adds the herald user")
    root = h.tmpdir().join("root")
    subprocess.run(["dpkg-deb", "-x", deb, root], check=True)
    binary = os.path.join(root, "usr/bin/herald")
    r = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30)
    fails.check(r.returncode == 0 and r.stdout.startswith("herald "), "--version: %r" % r.stdout)
    r = subprocess.run([binary, "check-config", "-c", os.path.join(root, "etc/herald/herald.yaml")],
                       capture_output=True, text=True, timeout=30, cwd=os.path.join(root, "etc/herald"))
    fails.check(r.returncode == 0, "the packaged config checks: %s" % r.stderr[-400:])

    smtp = h.start_aiosmtpd()
    redis = h.start_redis()
    path = h.write_config(h.base_config(redis, smtp.port))
    p = h.Proc("packaged-herald", [binary, "run", "-c", path])
    h.xadd_jobs(redis, [{"id": "pkg-1", "tenant": "acme", "to": "pat@clinic.test",
                         "subject": "Reminder", "text": "9:00"}])
    notes = h.wait_terminal(redis, ["pkg-1"], timeout=h.scaled(30))
    fails.check(notes[-1].get("event") == "delivered", "the packaged binary delivers: %s"
                % h.format_note(notes[-1]))
    p.stop(timeout=30)
    fails.raise_if_any("package")


if __name__ == "__main__":
    h.main(run)
