"""Redis over TLS with ACL AUTH: `herald run`, `herald enqueue` and
`herald events` all reach a TLS-only redis-server (certificate from a test
CA, verified) as an ACL user whose password comes from a file or the
environment; a server certificate the CA did not sign is refused."""

import os

import harness as h
from testca import TestCA


def run():
    ca = TestCA(h.tmpdir().path)
    cert = ca.issue("redis", ["127.0.0.1"])
    redis = h.start_redis(tls=(cert[0], cert[1], ca.ca_file), user=("herald", "pw-123"))
    smtp = h.start_aiosmtpd()
    pw = h.tmpdir().join("redis.pw")
    with open(pw, "w") as f:
        f.write("pw-123\n")
    os.chmod(pw, 0o600)  # herald refuses a password file others can read
    cfg = h.base_config(redis, smtp.port)
    cfg["redis"] = {"url": redis.url, "password_file": pw, "ca_file": ca.ca_file}
    path = h.write_config(cfg)
    fails = h.Failures()

    h.enqueue(path, [{"tenant": "acme", "to": "pat%d@clinic.test" % i, "subject": "Reminder",
                      "text": "9:00"} for i in range(20)])
    herald = h.run_herald(path)
    h.wait_notes(redis, 20, timeout=30, herald=herald)
    herald.stop()
    notes = h.read_notes(redis)
    fails.check(all(n.get("event") == "delivered" for n in notes) and len(notes) == 20,
                "20 delivered notes expected: %s" % h.summarize(notes))
    fails.check(smtp.count() == 20, "server should hold 20 messages, has %d" % smtp.count())
    r = h.herald_cli(["events", "-c", path, "--json"])
    fails.check(r.returncode == 0 and r.stdout.count('"delivered"') == 20,
                "herald events over TLS: exit %d %s" % (r.returncode, r.stderr[-300:]))

    # Password from the environment instead of a file.
    env_cfg = dict(cfg, redis={"url": redis.url, "password_env": "HERALD_TEST_REDIS_PW",
                               "ca_file": ca.ca_file})
    os.environ["HERALD_TEST_REDIS_PW"] = "pw-123"
    r = h.herald_cli(["events", "-c", h.write_config(env_cfg, "env.yaml"), "--json"])
    fails.check(r.returncode == 0, "password from the environment: exit %d %s"
                % (r.returncode, r.stderr[-300:]))

    # A CA that did not sign the server's certificate: refused, with why.
    other = TestCA(h.tmpdir().mkdir("other-ca"), cn="someone else")
    bad_cfg = dict(cfg, redis={"url": redis.url, "password_file": pw, "ca_file": other.ca_file})
    r = h.herald_cli(["events", "-c", h.write_config(bad_cfg, "bad.yaml")])
    fails.check(r.returncode == 1 and "certificate verify failed" in r.stderr,
                "an untrusted server certificate must be refused: exit %d %r"
                % (r.returncode, r.stderr[-300:]))
    # Wrong password: AUTH refused, clearly.
    with open(pw, "w") as f:
        f.write("wrong\n")
    r = h.herald_cli(["events", "-c", path])
    fails.check(r.returncode == 1 and "AUTH" in r.stderr,
                "a wrong password must fail AUTH: exit %d %r" % (r.returncode, r.stderr[-300:]))
    fails.raise_if_any("redis over TLS")


if __name__ == "__main__":
    h.main(run)
