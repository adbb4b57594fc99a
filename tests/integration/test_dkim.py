"""DKIM end to end: herald signs, aiosmtpd receives, independent verifiers
check every received message.

Keys are made with the openssl command line; the public halves (DNS TXT
records) are derived here with python3-cryptography, not taken from herald.
Tenants: acme (rsa-2048), beta (ed25519), gamma (dual: rsa + ed25519, with
x=). Messages: plain ASCII, non-ASCII subject/body/display name, 3000-char
lines, html+text multipart, lines starting with dots, List-Unsubscribe
(https one-click and mailto).

Verifiers:
  1. python3-dkim in-process, every signature (idx 0 and 1), the key given
     by an injected DNS function;
  2. dkimverify (python3-dkim's command) and opendkim-testmsg (libopendkim),
     both asking the system resolver: they run in a private network+mount
     namespace (dkim_ns.py) where /etc/resolv.conf points at a dnsmasq
     serving the test zone on 127.0.0.1:53.
Tampered copies (one body byte changed; a second From added on top, which
the oversigned From must catch) have to FAIL with every verifier, which
proves the checks can fail.

Also: check-config refuses key files with loose permissions, a key of the
wrong type and a short RSA key, exit 2 with FILE:LINE:COL."""

import base64
import json
import os
import re
import subprocess

import dkim
from cryptography.hazmat.primitives import serialization

import harness as h

OPENSSL = "/usr/bin/openssl"


def genkey(path, kind):
    argv = [OPENSSL, "genpkey", "-out", path]
    if kind == "ed25519":
        argv += ["-algorithm", "ED25519"]
    else:
        argv += ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:%d" % kind]
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.chmod(path, 0o600)
    return path


def txt_record(path):
    with open(path, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), password=None)
    pub = key.public_key()
    try:
        raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return "v=DKIM1; k=ed25519; p=" + base64.b64encode(raw).decode()
    except ValueError:
        der = pub.public_bytes(serialization.Encoding.DER,
                               serialization.PublicFormat.SubjectPublicKeyInfo)
        return "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()


def dnsmasq_txt(name, value):
    """dnsmasq txt-record syntax; one DNS character-string holds at most
    255 octets, so longer values go as several quoted strings."""
    parts = [value[i:i + 200] for i in range(0, len(value), 200)]
    return "txt-record=%s,%s" % (name, ",".join('"%s"' % p for p in parts))


LONG = ("Dies ist eine sehr lange Zeile ohne Umbruch, äöü " * 70)[:3000]

JOBS = [
    {"tenant": "acme", "subject": "Plain reminder", "text": "Hi Sam,\nsee you at 09:15.\n"},
    {"tenant": "acme", "subject": "Rappel : rendez-vous chez le Dr Müller à 14h30 ✓",
     "text": "Grüße — 🦷 Zahnreinigung am 12.03.\n.dot line\n..two\n", "from_name": "Zahnärztin Ärger"},
    {"tenant": "acme", "subject": "Long lines", "text": LONG + "\n" + LONG, "html": "<p>" + LONG + "</p>"},
    {"tenant": "acme", "subject": "Unsubscribe me", "text": "bye",
     "unsubscribe": "https://acme.test/u?c=1, mailto:unsub@acme.test?subject=c1"},
    {"tenant": "beta", "subject": "予約のリマインダー: 明日 10:00", "text": "明日 10:00\r\n\r\n\r\n",
     "html": "<p>明日 <b>10:00</b></p>"},
    {"tenant": "beta", "subject": "Ed25519 with unsubscribe", "text": "trailing   \t\nspaces  ",
     "unsubscribe": "https://beta.test/u/2"},
    {"tenant": "gamma", "subject": "Dual signed ✓", "text": LONG, "html": "<div>ü</div>",
     "unsubscribe": "https://gamma.test/u/3"},
    {"tenant": "gamma", "subject": "Dual signed, mailto only", "text": ".\n.\n",
     "unsubscribe": "mailto:u@gamma.test", "from_name": "Gamma Ünïcödé News"},
    # Raw messages: LF line ends, a CRLFCRLF inside a body whose header
    # ends in LF (the header ends at the first empty line, not there), and
    # a From in another of the tenant's domains than the job's `from`: d=
    # follows the message's own From, which is what receivers align with.
    {"tenant": "acme", "raw": "From: Acme <reminders@acme.test>\nTo: x@example.test\n"
                              "Subject: Raw with LF\n\nline one\n.dot line\n"},
    {"tenant": "acme", "raw": "From: reminders@acme.test\nSubject: Raw split\n\nfirst part"
                              "\r\n\r\nX-Not-A-Header: body\r\n"},
    {"tenant": "acme", "raw": "From: Care Desk <desk@care.acme.test>\r\n"
                              "Subject: Raw, other domain\r\n\r\nbody\r\n",
     "_sigs": [("care.acme.test", "s1")]},
]


def check_key_refusals(redis, keys, fails):
    def cfg_with(key, alg):
        return h.write_config(h.base_config(redis, 2525, tenants={
            "acme": {"from": "reminders@acme.test",
                     "dkim": {"selector": "s1", "key": key, "algorithm": alg}}}),
            name="refuse.yaml")

    loose = h.tmpdir().join("loose.pem")
    genkey(loose, 2048)
    small = genkey(h.tmpdir().join("small.pem"), 768)
    cases = [
        (loose, "rsa-sha256", 0o644, r"accessible to group or others \(mode 0644\)"),
        (loose, "rsa-sha256", 0o640, r"accessible to group or others \(mode 0640\)"),
        (loose, "rsa-sha256", 0o602, r"accessible to group or others \(mode 0602\)"),
        (keys["rsa"], "ed25519-sha256", None, r"is an RSA key, algorithm ed25519-sha256"),
        (keys["ed"], "rsa-sha256", None, r"is an Ed25519 key, algorithm rsa-sha256"),
        (small, "rsa-sha256", None, r"has 768 bits; RSA keys need at least 1024"),
        (h.tmpdir().join("missing.pem"), "rsa-sha256", None, r"cannot open DKIM key"),
        (cfg_with(keys["rsa"], "rsa-sha256"), "rsa-sha256", 0o600, r"is not a PEM private key"),
    ]
    for key, alg, mode, want in cases:
        if mode is not None:
            os.chmod(key, mode)
        cfg = cfg_with(key, alg)
        cp = h.herald_cli(["check-config", "-c", cfg])
        m = re.search(r"^(.+):(\d+):(\d+): (.*)$", cp.stderr, re.M)
        ok = (cp.returncode == 2 and m and m.group(1) == cfg and re.search(want, m.group(4)))
        fails.check(ok, "check-config with key %s (%s, mode %s): expected exit 2 and "
                    "FILE:LINE:COL: ...%s; got exit %d: %s" % (
                        key, alg, oct(mode) if mode else "-", want, cp.returncode,
                        cp.stderr.strip()[-300:]))
    os.chmod(loose, 0o600)
    cp = h.herald_cli(["check-config", "-c", cfg_with(loose, "rsa-sha256")])
    fails.check(cp.returncode == 0 and "publish       s1._domainkey.acme.test TXT" in cp.stdout,
                "check-config with a 0600 key should pass and print the TXT record: exit %d %s"
                % (cp.returncode, (cp.stdout + cp.stderr)[-500:]))


def py_verify_all(content, records):
    """Verify every DKIM-Signature with python3-dkim; returns a list of
    (domain, selector, ok)."""
    def dnsfunc(name, timeout=5):
        return records.get(name.decode().rstrip("."), "").encode()

    d = dkim.DKIM(content, minkey=1024)
    out = []
    n = len([1 for k, _ in d.headers if k.lower() == b"dkim-signature"])
    for i in range(n):
        try:
            ok = d.verify(idx=i, dnsfunc=dnsfunc)
        except dkim.DKIMException:
            ok = False
        sig = dkim.parse_tag_value(d.headers[[j for j, (k, _) in enumerate(d.headers)
                                              if k.lower() == b"dkim-signature"][i]][1])
        out.append((sig.get(b"d", b"").decode(), sig.get(b"s", b"").decode(), ok))
    return out


def tamper_body(content):
    head, sep, body = content.partition(b"\r\n\r\n")
    i = next((k for k, c in enumerate(body) if chr(c).isalnum()), None)
    if i is None:
        return head + sep + body + b"x\r\n"
    body = body[:i] + (b"Z" if body[i:i + 1] != b"Z" else b"Y") + body[i + 1:]
    return head + sep + body


def tamper_from(content):
    return b"From: Mallory <ceo@acme.test>\r\n" + content


def run():
    fails = h.Failures()
    keys = {"rsa": genkey(h.tmpdir().join("rsa.pem"), 2048),
            "ed": genkey(h.tmpdir().join("ed.pem"), "ed25519")}
    records = {
        "s1._domainkey.acme.test": txt_record(keys["rsa"]),
        "s1._domainkey.care.acme.test": txt_record(keys["rsa"]),
        "e1._domainkey.beta.test": txt_record(keys["ed"]),
        "s1._domainkey.gamma.test": txt_record(keys["rsa"]),
        "e1._domainkey.gamma.test": txt_record(keys["ed"]),
    }
    redis = h.start_redis()
    check_key_refusals(redis, keys, fails)
    fails.raise_if_any("key file checks")

    smtp = h.start_aiosmtpd()
    # Template output is signed like any other message.
    tpl_text, tpl_html = h.tmpdir().join("remind.txt"), h.tmpdir().join("remind.html")
    with open(tpl_text, "w") as f:
        f.write("Bonjour {{ who }},\nrendez-vous à {{ when }}.\n" + LONG + "\n")
    with open(tpl_html, "w") as f:
        f.write("<p>Bonjour {{ who }}, rendez-vous à <b>{{ when }}</b>.</p>\n")
    cfg = h.write_config(h.base_config(redis, smtp.port, tenants={
        "acme": {"from": "reminders@acme.test", "domains": ["acme.test", "care.acme.test"],
                 "dkim": {"selector": "s1", "key": keys["rsa"]},
                 "templates": {"remind": {"subject": "Rappel pour {{ who }}",
                                          "text": tpl_text, "html": tpl_html}}},
        "beta": {"from": "desk@beta.test",
                 "dkim": {"selector": "e1", "key": keys["ed"], "algorithm": "ed25519-sha256"}},
        "gamma": {"from": "news@gamma.test",
                  "dkim": [{"selector": "s1", "key": keys["rsa"], "expire": "7d"},
                           {"selector": "e1", "key": keys["ed"], "algorithm": "ed25519-sha256",
                            "domain": "gamma.test"}]},
    }))
    jobs = []
    all_jobs = JOBS + [{"tenant": "acme", "template": "remind", "var.who": "Zoë <Müller> & co",
                        "var.when": "14h30"}]
    expect = {}
    for i, j in enumerate(all_jobs):
        job = dict(j, id="dkim-%02d" % i, to="rcpt%02d@example.test" % i)
        expect[job["to"]] = job.pop("_sigs", None)
        jobs.append(job)
    by_rcpt = {j["to"]: j for j in jobs}
    h.enqueue(cfg, jobs)
    herald = h.run_herald(cfg)
    h.wait_terminal(redis, [j["id"] for j in jobs], timeout=60, herald=herald)
    smtp.wait_count(len(jobs), 10)
    herald.stop()
    received = smtp.messages()
    fails.check(len(received) == len(jobs), "expected %d messages, got %d (notes: %s)" % (
        len(jobs), len(received), h.summarize(h.read_notes(redis))))
    fails.raise_if_any("delivery")

    want_sigs = {"acme": [("acme.test", "s1")], "beta": [("beta.test", "e1")],
                 "gamma": [("gamma.test", "s1"), ("gamma.test", "e1")]}
    files = []
    for m in received:
        job = by_rcpt[m["rcpt_tos"][0]]
        who = "%s (%s)" % (job["id"], m["path"])
        c = m["content"]
        head = c.partition(b"\r\n\r\n")[0].decode("ascii", "replace")
        sig_fields = re.findall(r"^DKIM-Signature:[^\r\n]*(?:\r\n[ \t][^\r\n]*)*", head, re.M)
        for f in sig_fields:
            for line in f.split("\r\n"):
                fails.check(len(line) <= 78, "%s: DKIM-Signature line of %d columns: %r" % (
                    who, len(line), line))
            hl = re.sub(r"\s", "", re.search(r"h=([^;]*)", f).group(1)).split(":")
            fails.check(hl.count("from") == 2, "%s: From not oversigned in h=%s" % (who, hl))
            if job.get("unsubscribe"):
                fails.check("list-unsubscribe" in hl, "%s: List-Unsubscribe unsigned" % who)
                if "https://" in job["unsubscribe"]:
                    fails.check("list-unsubscribe-post" in hl,
                                "%s: List-Unsubscribe-Post unsigned: %s" % (who, hl))
            if job["tenant"] == "gamma" and "a=rsa-sha256" in f:
                fails.check(re.search(r"x=\d+", f) is not None, "%s: no x= tag" % who)
        if job.get("unsubscribe", "").startswith("https://"):
            fails.check("\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" in head,
                        "%s: https unsubscribe without List-Unsubscribe-Post" % who)
        elif job.get("unsubscribe"):
            fails.check("List-Unsubscribe-Post" not in head,
                        "%s: List-Unsubscribe-Post without an https URL" % who)
        results = py_verify_all(c, records)
        got = [(d, s) for d, s, _ in results]
        want = expect[job["to"]] or want_sigs[job["tenant"]]
        fails.check(got == want, "%s: signatures %s, expected %s" % (who, got, want))
        for d, s, ok in results:
            fails.check(ok, "%s: python3-dkim says the %s/%s signature does not verify" % (
                who, d, s))
        for name, bad in (("body", tamper_body(c)), ("from", tamper_from(c))):
            for d, s, ok in py_verify_all(bad, records):
                fails.check(not ok, "%s: %s-tampered copy still verifies (%s/%s)" % (
                    who, name, d, s))
            path = m["path"] + ".tampered-" + name
            with open(path, "wb") as f:
                f.write(bad)
            files.append((path, False, job))
        files.append((m["path"], True, job))
    fails.raise_if_any("python3-dkim verification")
    h.log("python3-dkim: %d messages verified, tampered copies fail" % len(received))

    # dkimverify and OpenDKIM through a private resolver.
    conf = h.tmpdir().join("dkim-dnsmasq.conf")
    with open(conf, "w") as f:
        f.write("\n".join(["listen-address=127.0.0.1", "bind-interfaces", "no-resolv",
                           "no-hosts", "local=/test/"] +
                          [dnsmasq_txt(n, v) for n, v in records.items()]) + "\n")
    out = h.tmpdir().join("dkim-ns.json")
    cp = subprocess.run(["unshare", "-mn", h.PY, os.path.join(h.HERE, "dkim_ns.py"), conf, out] +
                        [p for p, _, _ in files], stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT, timeout=h.scaled(300))
    if cp.returncode != 0 and b"unshare failed" in cp.stdout:
        raise h.Skip("cannot create a network namespace here: %s" % cp.stdout.decode()[-300:])
    h.check(cp.returncode == 0, "dkim_ns.py failed (%d): %s" % (
        cp.returncode, cp.stdout.decode("utf-8", "replace")[-1500:]))
    with open(out) as f:
        res = json.load(f)
    for path, good, job in files:
        for tool in ("dkimverify", "opendkim"):
            rc, text = res[path][tool]
            if good:
                fails.check(rc == 0, "%s rejects %s (%s): exit %d: %s" % (
                    tool, path, job["tenant"], rc, text.strip()[-400:]))
            else:
                fails.check(rc != 0, "%s accepts the tampered %s (%s)" % (tool, path,
                                                                         job["tenant"]))
    fails.raise_if_any("dkimverify / opendkim-testmsg")
    h.log("dkimverify and opendkim-testmsg: %d messages pass, %d tampered copies fail" % (
        sum(1 for f in files if f[1]), sum(1 for f in files if not f[1])))


if __name__ == "__main__":
    h.main(run)
