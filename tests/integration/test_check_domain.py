"""`herald check-domain` against a real DNS server (dnsmasq) serving four
test domains, in text and --json:
  good.test  nested SPF includes that pass, DKIM matching herald's RSA key,
             DMARC p=reject aligned, PTR forward-confirmed = EHLO, not
             on the DNSBL -> every check PASS, exit 0;
  lim.test   SPF over the 10-lookup limit (permerror), DKIM record missing
             (the record to publish, split in <=255-char strings), no PTR;
  miss.test  SPF not covering the egress IP (the record with ip4: added
             before the final ~all), DKIM key mismatch (Ed25519), DMARC
             p=reject with unaligned From, PTR differing from EHLO, egress
             IP listed on the test DNSBL with its TXT reason;
  none.test  no SPF record (the whole record to publish), null MX, PTR that
             does not resolve back."""

import base64
import json
import subprocess

import harness as h
from dnszone import DnsZone


def keypair(kind):
    """(private key path, base64 public key as DKIM publishes it)."""
    path = h.tmpdir().unique("dkim-%s" % kind) + ".pem"
    algo = ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"] if kind == "rsa" else \
        ["-algorithm", "ED25519"]
    subprocess.run(["openssl", "genpkey"] + algo + ["-out", path], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    der = subprocess.run(["openssl", "pkey", "-in", path, "-pubout", "-outform", "DER"],
                         check=True, stdout=subprocess.PIPE).stdout
    if kind == "ed25519":
        der = der[-32:]  # the raw key ends the SubjectPublicKeyInfo
    return path, base64.b64encode(der).decode()


def txt(name, value):
    """A dnsmasq txt-record line, the value split in 255-byte strings."""
    parts = [value[i:i + 255] for i in range(0, len(value), 255)] or [""]
    return "txt-record=%s,%s" % (name, ",".join('"%s"' % p for p in parts))


def run():
    good_key, good_pub = keypair("rsa")
    lim_key, lim_pub = keypair("rsa")
    miss_key, miss_pub = keypair("ed25519")
    _, other_pub = keypair("ed25519")
    lines = [
        # good.test
        "mx-host=good.test,mx.good.test,10",
        "host-record=mx.good.test,127.0.0.50",
        txt("good.test", "v=spf1 include:_spf.good.test -all"),
        txt("_spf.good.test", "v=spf1 include:_inner.good.test ~all"),
        txt("_inner.good.test", "v=spf1 ip4:127.0.0.0/30 -all"),
        txt("s1._domainkey.good.test", "v=DKIM1; k=rsa; p=" + good_pub),
        txt("_dmarc.good.test", "v=DMARC1; p=reject; adkim=s"),
        "host-record=mta1.good.test,127.0.0.1",
        "host-record=mta1.good.test,127.0.0.2",
        # lim.test: 11 includes
        "mx-host=lim.test,mx.good.test,10",
        txt("lim.test", "v=spf1 " + " ".join("include:_s%d.lim.test" % i for i in range(1, 12))
            + " -all"),
        txt("_dmarc.lim.test", "v=DMARC1; p=none"),
    ]
    lines += [txt("_s%d.lim.test" % i, "v=spf1 ip4:10.0.0.%d -all" % i) for i in range(1, 12)]
    lines += [
        # miss.test
        "mx-host=miss.test,mx.good.test,10",
        txt("miss.test", "v=spf1 mx ip4:192.0.2.1 ~all"),
        txt("s2._domainkey.miss.test", "v=DKIM1; k=ed25519; p=" + other_pub),
        txt("_dmarc.miss.test", "v=DMARC1; p=reject"),
        "host-record=other.miss.test,127.0.0.4",
        "address=/4.0.0.127.bl.test/127.0.0.2",
        txt("4.0.0.127.bl.test", "listed for testing: see https://bl.test/127.0.0.4"),
        # none.test
        "dns-rr=none.test,15,000000",
        "ptr-record=5.0.0.127.in-addr.arpa,ghost.none.test",
    ]
    zone = DnsZone(lines, local=("test", "127.in-addr.arpa"))
    cfg = {
        "engine": {"workers": 1, "ehlo": "test.herald"},
        "egress": {"default": ["127.0.0.1"],
                   "good": {"ips": ["127.0.0.1", "127.0.0.2"], "ehlo": "mta1.good.test"},
                   "lim": ["127.0.0.3"], "miss": ["127.0.0.4"], "none": ["127.0.0.5"]},
        "dns": {"servers": [zone.server]},
        "dnsbl": ["bl.test"],
        "sender": {"address": "notify@platform.test"},
        "tenants": {
            "good": {"from": "reminders@good.test", "egress": "good",
                     "dkim": {"selector": "s1", "key": good_key}},
            "lim": {"from": "desk@lim.test", "egress": "lim",
                    "dkim": {"selector": "s1", "key": lim_key}},
            "miss": {"from": "desk@miss.test", "egress": "miss",
                     "dkim": {"selector": "s2", "key": miss_key, "algorithm": "ed25519-sha256"}},
            "none": {"from": "desk@none.test", "egress": "none", "from_fallback": "rewrite"},
        },
    }
    path = h.write_config(cfg)
    fails = h.Failures()

    def check_domain(domain, *extra):
        r = h.herald_cli(["check-domain", domain, "-c", path] + list(extra))
        h.log("check-domain %s %s: exit %d\n%s%s" % (domain, " ".join(extra), r.returncode,
                                                    r.stdout, r.stderr))
        return r

    def has(r, text, what):
        fails.check(text in r.stdout, "%s: expected %r in:\n%s" % (what, text, r.stdout))

    def line(r, name, verdict, what):
        ok = any(l.startswith("%-10s %s " % (name, verdict)) for l in r.stdout.splitlines())
        fails.check(ok, "%s: expected a '%s %s' line in:\n%s" % (what, name, verdict, r.stdout))

    # good.test: everything passes.
    r = check_domain("good.test")
    fails.check(r.returncode == 0, "good.test: exit %d, expected 0" % r.returncode)
    for name in ("mx", "spf", "dkim", "dmarc", "ptr", "dnsbl"):
        line(r, name, "PASS", "good.test")
    has(r, "result: PASS (0 failed, 0 warnings)", "good.test")
    has(r, "aligns via DKIM and SPF", "good.test DMARC")
    j = json.loads(check_domain("good.test", "--json").stdout)
    fails.check(j["result"] == "PASS" and j["tenant"] == "good"
                and all(c["verdict"] == "PASS" for c in j["checks"])
                and {c["name"] for c in j["checks"]} == {"mx", "spf", "dkim", "dmarc", "ptr", "dnsbl"},
                "good.test --json: %s" % j)

    # lim.test: permerror, missing DKIM record, no PTR.
    r = check_domain("lim.test")
    fails.check(r.returncode == 1, "lim.test: exit %d, expected 1" % r.returncode)
    line(r, "spf", "FAIL", "lim.test")
    has(r, "permerror", "lim.test SPF")
    has(r, "more than 10 DNS lookups", "lim.test SPF")
    line(r, "dkim", "FAIL", "lim.test")
    has(r, "no DKIM record at s1._domainkey.lim.test", "lim.test DKIM")
    rec = "v=DKIM1; k=rsa; p=" + lim_pub
    has(r, '"%s" "%s"' % (rec[:255], rec[255:]), "lim.test DKIM record to publish, split at 255")
    line(r, "ptr", "FAIL", "lim.test")
    has(r, "127.0.0.3 has no PTR record", "lim.test PTR")
    j = json.loads(check_domain("lim.test", "--json").stdout)
    dk = [c for c in j["checks"] if c["name"] == "dkim"]
    fails.check(j["result"] == "FAIL" and dk and dk[0]["verdict"] == "FAIL"
                and lim_pub[:200] in dk[0].get("fix", ""),
                "lim.test --json dkim: %s" % dk)

    # miss.test
    r = check_domain("miss.test")
    fails.check(r.returncode == 1, "miss.test: exit %d, expected 1" % r.returncode)
    line(r, "spf", "FAIL", "miss.test")
    has(r, "127.0.0.4: softfail", "miss.test SPF")
    has(r, '"v=spf1 mx ip4:192.0.2.1 ip4:127.0.0.4 ~all"', "miss.test SPF record with the IP added")
    line(r, "dkim", "FAIL", "miss.test")
    has(r, "differs from the key herald signs with", "miss.test DKIM")
    has(r, '"v=DKIM1; k=ed25519; p=%s"' % miss_pub, "miss.test DKIM record to publish")
    line(r, "dmarc", "FAIL", "miss.test")
    has(r, "p=reject", "miss.test DMARC")
    has(r, "does not align", "miss.test DMARC")
    line(r, "ptr", "WARN", "miss.test")
    has(r, "PTR other.miss.test (forward-confirmed) differs from EHLO test.herald", "miss.test PTR")
    line(r, "dnsbl", "FAIL", "miss.test")
    has(r, "127.0.0.4 is listed: bl.test (127.0.0.2: listed for testing", "miss.test DNSBL")
    j = json.loads(check_domain("miss.test", "--json").stdout)
    by = {c["name"]: c for c in j["checks"]}
    fails.check(by.get("spf", {}).get("verdict") == "FAIL"
                and "ip4:127.0.0.4 ~all" in by["spf"].get("fix", ""), "miss.test --json spf: %s" % by.get("spf"))
    fails.check(by.get("dnsbl", {}).get("verdict") == "FAIL", "miss.test --json dnsbl")
    fails.check(by.get("dmarc", {}).get("verdict") == "FAIL", "miss.test --json dmarc")

    # none.test
    r = check_domain("none.test")
    fails.check(r.returncode == 1, "none.test: exit %d, expected 1" % r.returncode)
    line(r, "mx", "WARN", "none.test")
    has(r, "null MX", "none.test MX")
    line(r, "spf", "FAIL", "none.test")
    has(r, '"v=spf1 ip4:127.0.0.5 -all"', "none.test SPF record to publish")
    line(r, "dkim", "WARN", "none.test")
    has(r, "no DMARC record", "none.test DMARC")
    line(r, "ptr", "FAIL", "none.test")
    has(r, "PTR ghost.none.test does not resolve back", "none.test FCrDNS")

    # --tenant picks the pool; usage errors are 2.
    r = check_domain("good.test", "--tenant", "none")
    fails.check(r.returncode == 1 and "127.0.0.5" in r.stdout,
                "--tenant none: its pool (127.0.0.5): exit %d\n%s" % (r.returncode, r.stdout))
    fails.check(check_domain("good.test", "--tenant", "nobody").returncode == 2, "unknown tenant: 2")
    fails.check(h.herald_cli(["check-domain", "-c", path]).returncode == 2, "no domain: 2")
    r = h.herald_cli(["check-domain", "--help"])
    fails.check(r.returncode == 0 and "--json" in r.stdout, "check-domain --help")
    zone.stop()
    fails.raise_if_any("check-domain")


if __name__ == "__main__":
    h.main(run)
