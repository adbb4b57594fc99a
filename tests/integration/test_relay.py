"""Tenant relays: mail goes through the clinic's own SMTP server with AUTH
(PLAIN or LOGIN) after STARTTLS or over implicit TLS; a wrong password is
`deferred` with category auth and the server's words; credentials are never
sent without TLS unless the tenant allows it (a config error otherwise, and
a relay that should offer STARTTLS but doesn't gets nothing). The relay's
certificate is verified against the relay's name and `ca_file` before any
credential goes: a relay that presents a certificate of another CA (a man
in the middle) gets no AUTH and no message, from the engine and from
smtp-test alike, unless the tenant says `insecure_skip_verify`."""

import os

import harness as h
from testca import TestCA


def job(job_id, tenant):
    return {"id": job_id, "tenant": tenant, "to": "pat@anywhere.test", "subject": "Reminder",
            "text": "See you at 9:00"}


def secret(name, value):
    path = h.tmpdir().join(name)
    with open(path, "w") as f:
        f.write(value + "\n")
    os.chmod(path, 0o600)
    return path


def run():
    ca = TestCA(h.tmpdir().path)
    cert = ca.issue("relay", ["relay.clinic.test", "127.0.0.1"])
    tls = ["--tls-cert", cert[0], "--tls-key", cert[1]]
    starttls = h.start_aiosmtpd(extra=tls + ["--auth", "clinic:s3cret"])
    implicit = h.start_aiosmtpd(extra=tls + ["--implicit-tls", "--auth", "clinic:s3cret"])
    plain = h.start_aiosmtpd(extra=["--auth", "clinic:s3cret", "--auth-plaintext"])
    # Someone else's certificate for the same name: what a man in the
    # middle towards the smarthost would present.
    other_dir = h.tmpdir().join("other-ca")
    os.makedirs(other_dir, exist_ok=True)
    other = TestCA(other_dir, cn="someone else's CA").issue("mitm", ["relay.clinic.test",
                                                                     "127.0.0.1"])
    mitm = h.start_aiosmtpd(extra=["--tls-cert", other[0], "--tls-key", other[1],
                                   "--auth", "clinic:s3cret"])
    redis = h.start_redis()
    good, bad = secret("good.pw", "s3cret"), secret("bad.pw", "wrong")

    def relay(port, pw, mode, **more):
        r = {"host": "127.0.0.1", "port": port, "tls": mode, "user": "clinic", "password_file": pw}
        if mode != "none":
            r["ca_file"] = ca.ca_file
        r.update(more)
        return r

    cfg = h.base_config(redis, plain.port)
    cfg["tenants"] = {
        "ok": {"from": "r@ok.example", "relay": relay(starttls.port, good, "starttls")},
        "badpw": {"from": "r@badpw.example", "relay": relay(starttls.port, bad, "starttls")},
        "smtps": {"from": "r@smtps.example", "relay": relay(implicit.port, good, "tls")},
        "plainstarttls": {"from": "r@pst.example",
                          "relay": relay(plain.port, good, "starttls")},
        "loose": {"from": "r@loose.example",
                  "relay": relay(plain.port, good, "none", allow_plaintext_auth=True)},
        "mitm": {"from": "r@mitm.example", "relay": relay(mitm.port, good, "starttls")},
        "private": {"from": "r@private.example",
                    "relay": relay(mitm.port, good, "starttls", ca_file=None,
                                   insecure_skip_verify=True)},
    }
    cfg["tenants"]["private"]["relay"].pop("ca_file")
    cfg["delivery"] = {"retry": ["1h"], "max_age": "2d", "timeouts": {"idle": "2s"}}
    fails = h.Failures()
    # Credentials over plaintext without the tenant's consent: refused at
    # config time, with the place and the fix.
    refused = dict(cfg, tenants=dict(cfg["tenants"], noenc={
        "from": "r@noenc.example", "relay": relay(plain.port, good, "none")}))
    r = h.herald_cli(["check-config", "-c", h.write_config(refused, "noenc.yaml")])
    fails.check(r.returncode == 2 and "allow_plaintext_auth" in r.stderr
                and "noenc.yaml:" in r.stderr,
                "plaintext relay AUTH should be a config error: exit %d %r"
                % (r.returncode, r.stderr))
    path = h.write_config(cfg)
    both = dict(cfg, tenants=dict(cfg["tenants"], both={
        "from": "r@both.example", "relay": relay(mitm.port, good, "starttls",
                                                 insecure_skip_verify=True)}))
    r = h.herald_cli(["check-config", "-c", h.write_config(both, "both.yaml")])
    fails.check(r.returncode == 2 and "not both" in r.stderr and "both.yaml:" in r.stderr,
                "ca_file with insecure_skip_verify should be a config error: exit %d %r"
                % (r.returncode, r.stderr))
    jobs = [job("ok-1", "ok"), job("ok-2", "ok"), job("badpw-1", "badpw"),
            job("smtps-1", "smtps"), job("loose-1", "loose"), job("noenc-1", "plainstarttls"),
            job("mitm-1", "mitm"), job("private-1", "private")]
    h.xadd_jobs(redis, jobs)
    herald = h.run_herald(path)
    h.wait_notes(redis, len(jobs), timeout=30, herald=herald)
    herald.stop()
    fails.check("event=relay_tls_unverified tenant=private" in herald.read_stderr(),
                "an unverified relay should be logged loudly at start")
    notes = {n["job"]: n for n in h.read_notes(redis)}
    n = notes.get("mitm-1", {})
    fails.check(n.get("event") == "deferred" and n.get("category") == "tls"
                and "certificate" in n.get("reply", ""),
                "a relay with a certificate of another CA: deferred (tls), nothing sent: %s"
                % h.format_note(n))
    mm = mitm.messages()
    fails.check(len(mm) == 1 and mm[0].get("auth_user") == "clinic"
                and "private.example" in mm[0].get("mail_from", ""),
                "the unverified relay gets only the tenant that opted out: %s"
                % [(m.get("auth_user"), m.get("mail_from")) for m in mm])
    for jid in ("ok-1", "ok-2", "smtps-1", "loose-1", "private-1"):
        n = notes.get(jid, {})
        fails.check(n.get("event") == "delivered", "%s should be delivered: %s"
                    % (jid, h.format_note(n)))
    for jid in ("ok-1", "smtps-1"):
        fails.check(notes.get(jid, {}).get("tls", "none").startswith("TLSv1."),
                    "%s should go over TLS" % jid)
    n = notes.get("badpw-1", {})
    fails.check(n.get("event") == "deferred" and n.get("category") == "auth"
                and n.get("code") == "535" and "authentication" in n.get("reply", "").lower(),
                "wrong password: deferred, category auth, with the server's 535: %s"
                % h.format_note(n))
    n = notes.get("noenc-1", {})
    fails.check(n.get("event") == "deferred" and n.get("category") == "tls"
                and "STARTTLS" in n.get("reply", ""),
                "relay with starttls to a server without it: deferred (tls), no AUTH: %s"
                % h.format_note(n))
    msgs = starttls.messages() + implicit.messages()
    fails.check(len(msgs) == 3 and all(m.get("auth_user") == "clinic" and m.get("tls")
                                       for m in msgs),
                "relay servers should hold 3 authenticated TLS messages: %s"
                % [(m.get("auth_user"), m.get("tls")) for m in msgs])
    pm = plain.messages()
    fails.check(len(pm) == 1 and pm[0].get("auth_user") == "clinic",
                "plaintext relay: only the tenant that allows it: %s" % pm)
    # The "test" button: every step shown, exit 0 only when all passed.
    r = h.herald_cli(["smtp-test", "-c", path, "--tenant", "ok", "--to", "pat@anywhere.test"])
    out = r.stdout
    for line in ("connect    PASS", "banner     PASS", "starttls   PASS", "tls        PASS",
                 "auth       PASS", "send       PASS", "result: PASS"):
        fails.check(line in out, "smtp-test ok: missing %r in:\n%s" % (line, out))
    fails.check("subject=\"relay.clinic.test\"" in out and "verified=" in out,
                "smtp-test should show the certificate:\n%s" % out)
    fails.check(r.returncode == 0, "smtp-test ok: exit %d" % r.returncode)
    r = h.herald_cli(["smtp-test", "-c", path, "--tenant", "badpw"])
    fails.check(r.returncode == 1 and "auth       FAIL  535" in r.stdout
                and "result: FAIL" in r.stdout,
                "smtp-test badpw: want exit 1 and the 535: exit %d\n%s" % (r.returncode, r.stdout))
    r = h.herald_cli(["smtp-test", "-c", path, "--tenant", "smtps"])
    fails.check(r.returncode == 0 and "tls        PASS  TLSv1." in r.stdout,
                "smtp-test implicit TLS: exit %d\n%s" % (r.returncode, r.stdout))
    fails.check(len(starttls.messages()) == 3, "smtp-test --to should have sent one message")
    r = h.herald_cli(["smtp-test", "-c", path, "--tenant", "mitm", "--to", "pat@anywhere.test"])
    fails.check(r.returncode == 1 and "result: FAIL" in r.stdout and "auth       PASS" not in r.stdout,
                "smtp-test to a relay with a foreign certificate: FAIL before AUTH: exit %d\n%s"
                % (r.returncode, r.stdout))
    fails.check(len(mitm.messages()) == 1, "smtp-test must not send to an unverified relay")
    fails.raise_if_any("relays")


if __name__ == "__main__":
    h.main(run)
