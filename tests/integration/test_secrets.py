"""Secrets stay secret: a password file (redis.password_file, a relay's
password_file) that group or others can access is refused like a DKIM key
(exit 2, FILE:LINE:COL of the path's value) by check-config and by run; a
password in redis.url, even one holding '@', is masked wherever the URL is
printed (check-config, CLI connection errors)."""

import os
import re

import harness as h


def show(cp):
    return "exit %d\nstdout: %s\nstderr: %s" % (cp.returncode, cp.stdout[-800:],
                                                 cp.stderr[-800:])


def secret(name, value, mode):
    path = h.tmpdir().join(name)
    with open(path, "w") as f:
        f.write(value + "\n")
    os.chmod(path, mode)
    return path


def value_pos(path, needle):
    """Line and column of the YAML value holding needle (its quote, if any)."""
    with open(path) as f:
        for n, text in enumerate(f, 1):
            if needle in text:
                i = text.index(needle)
                return n, i if text[i - 1] == '"' else i + 1
    return None, None


def expect_refused(cmd, cfg, pw, mode, fails):
    try:
        cp = h.herald_cli([cmd, "-c", cfg], timeout=20)
    except h.TestFailure as e:
        fails.add("%s with a %s password file did not exit: %s" % (cmd, oct(mode), e))
        return
    want_line, want_col = value_pos(cfg, pw)
    m = re.search(r"^(.+):(\d+):(\d+): (.*)$", cp.stderr, re.M)
    ok = (cp.returncode == 2 and m and m.group(1) == cfg and
          (int(m.group(2)), int(m.group(3))) == (want_line, want_col) and
          "password file %s is accessible to group or others (mode %04o)" % (pw, mode)
          in m.group(4))
    fails.check(ok, "%s with password file mode %s: expected exit 2 and %s:%s:%s: password "
                "file ... accessible to group or others: %s"
                % (cmd, oct(mode), cfg, want_line, want_col, show(cp)))


def check_permissions(redis, fails):
    for mode in (0o644, 0o640, 0o604):
        pw = secret("redis-%o.pw" % mode, "pw-123", mode)
        cfg = h.base_config(redis, 2525)
        cfg["redis"] = {"url": redis.url, "password_file": pw}
        cfg = h.write_config(cfg, name="redis-%o.yaml" % mode)
        expect_refused("check-config", cfg, pw, mode, fails)
    pw = secret("relay.pw", "s3cret", 0o640)
    cfg = h.write_config(h.base_config(redis, 2525, tenants={"clinic": {
        "from": "r@clinic.example",
        "relay": {"host": "127.0.0.1", "port": 2525, "tls": "starttls", "user": "clinic",
                  "password_file": pw}}}), name="relay.yaml")
    expect_refused("check-config", cfg, pw, 0o640, fails)
    expect_refused("run", cfg, pw, 0o640, fails)
    os.chmod(pw, 0o600)
    cp = h.herald_cli(["check-config", "-c", cfg])
    fails.check(cp.returncode == 0, "check-config with a 0600 relay password file: " + show(cp))
    fails.check("s3cret" not in cp.stdout + cp.stderr,
                "check-config printed the relay password: " + show(cp))


def check_masking(redis, fails):
    url = "redis://herald:p@ss/w0rd@127.0.0.1:%d/0" % redis.port
    cfg = h.base_config(redis, 2525)
    cfg["redis"] = {"url": url}
    cfg = h.write_config(cfg, name="mask.yaml")
    cp = h.herald_cli(["check-config", "-c", cfg])
    want = "redis://herald:***@127.0.0.1:%d/0" % redis.port
    fails.check(cp.returncode == 0 and want in cp.stdout,
                "check-config should show the URL as %s: %s" % (want, show(cp)))
    bad = "redis://herald:p@ss/w0rd@127.0.0.1:99999/0"
    cfg = h.base_config(redis, 2525)
    cfg["redis"] = {"url": bad}
    cfg = h.write_config(cfg, name="badport.yaml")
    for args in (["check-config", "-c", cfg], ["events", "-c", cfg]):
        cp = h.herald_cli(args)
        for piece in ("p@ss", "ss/w0rd", "w0rd"):
            fails.check(piece not in cp.stdout + cp.stderr,
                        "%s printed part of the password (%r): %s" % (args[0], piece, show(cp)))
    fails.check(cp.returncode != 0 and "herald:***@127.0.0.1:99999" in cp.stderr,
                "events with a bad port should fail naming the masked URL: " + show(cp))


def run():
    redis = h.start_redis()
    fails = h.Failures()
    check_permissions(redis, fails)
    check_masking(redis, fails)
    fails.raise_if_any("secrets")


if __name__ == "__main__":
    h.main(run)
