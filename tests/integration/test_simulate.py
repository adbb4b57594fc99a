"""`herald simulate` as an operator runs it: a config and a small traffic
file (JSON Lines), in text and --json, with --plot drawing a PNG through
gnuplot (and exit 1 with a clear message when gnuplot is not on PATH), and
the exit codes of bad input: a bad traffic line is 2 with file:line:
message, an unknown tenant is 2 naming its line, usage errors are 2,
--help is 0. No Redis and no SMTP server: the run is virtual."""

import json
import os

import harness as h

CONFIG = """\
egress:
  default: [192.0.2.1, 192.0.2.2]
tenants:
  acme:
    from: r@acme.test
    weight: 2
  beta:
    from: n@beta.test
providers:
  google:
    mx: ["*.google.com"]
    connections: 20
    rate: 600/m
  default:
    connections: 10
    rate: 20/s
delivery:
  retry: [1m, 5m]
  max_age: 20m
"""

TRAFFIC = """\
# two sites with a line each; example.org behaves as "*" says
{"site": "gmail.com", "mx": ["gmail-smtp-in.l.google.com"], "latency_ms": 80}
{"site": "slow.test", "limit_per_s": 5, "tempfail": 0.05, "latency_ms": 200}
{"site": "*", "latency_ms": 50}
{"t": 0, "tenant": "acme", "domain": "gmail.com", "count": 1200}
{"t": 10, "tenant": "beta", "domain": "gmail.com", "count": 10, "priority": "high"}
{"t": 0, "tenant": "beta", "domain": "slow.test", "count": 300, "over": 30}
{"t": 0, "tenant": "acme", "domain": "example.org", "count": 200, "over": 20, "priority": "bulk"}
"""


def run():
    tmp = h.tmpdir()
    cfg = h.write_config(CONFIG)
    traffic = tmp.join("traffic.jsonl")
    with open(traffic, "w") as f:
        f.write(TRAFFIC)
    fails = h.Failures()

    # Text: a table per site, egress IP and tenant.
    r = h.herald_cli(["simulate", "-c", cfg, "--traffic", traffic])
    h.check(r.returncode == 0, "simulate: exit %d\n%s%s" % (r.returncode, r.stdout, r.stderr))
    h.log(r.stdout)
    for want in ("simulated 1710 jobs", "gmail.com", "slow.test", "example.org", "192.0.2.1",
                 "192.0.2.2", "acme", "beta", "steady/s", "p99", "parked:", "factor min"):
        fails.check(want in r.stdout, "text output lacks %r" % want)
    fails.check(r.stderr == "", "text run wrote to stderr: %r" % r.stderr)

    # JSON: the same numbers, one document.
    r = h.herald_cli(["simulate", "-c", cfg, "--traffic", traffic, "--json", "--seed", "5"])
    h.check(r.returncode == 0, "--json: exit %d\n%s" % (r.returncode, r.stderr))
    doc = json.loads(r.stdout)
    sites = {s["name"]: s for s in doc["sites"]}
    ips = {s["name"]: s for s in doc["egress_ips"]}
    tenants = {s["name"]: s for s in doc["tenants"]}
    fails.check(doc["jobs"] == 1710 and doc["pending"] == 0, "jobs/pending: %r" % (
        {k: doc[k] for k in ("jobs", "pending")},))
    g = sites["gmail.com"]
    fails.check(g["delivered"] == 1210, "gmail delivered %d" % g["delivered"])
    # 600/m per IP, two IPs: 20/s for the site, 10/s each
    fails.check(19.0 <= g["steady_per_s"] <= 21.0, "gmail steady %.2f/s" % g["steady_per_s"])
    for ip in ("192.0.2.1", "192.0.2.2"):
        fails.check(ips[ip]["delivered"] > 0, "%s delivered nothing" % ip)
    fails.check(g["parked"]["rate"] > 0, "gmail: nothing parked for the rate: %r" % g["parked"])
    fails.check(len(g["delivered_per_s"]) == len(g["queue_depth"]) > 0, "gmail series")
    # beta's 10 high jobs behind acme's backlog go within a few seconds
    fails.check(tenants["beta"]["delivered"] == 310, "beta delivered %d" % (
        tenants["beta"]["delivered"],))
    s = sites["slow.test"]
    fails.check(s["deferred"] > 0 and s["signals"] > 0,
                "slow.test: a 5/s limit under 20/s gave no 421s: %r" % s)
    fails.check(s["delivered"] + s["expired"] + s["bounced"] == 300, "slow.test ends: %r" % s)
    fails.check(sites["example.org"]["p99_ms"] is not None, "example.org p99")
    paths = {(p["egress_ip"], p["provider"]) for p in doc["paths"]}
    fails.check(("192.0.2.1", "google") in paths and ("192.0.2.2", "default") in paths,
                "paths: %r" % paths)

    # --plot: a PNG through gnuplot, and a clear exit 1 without it.
    png = tmp.join("sim.png")
    r = h.herald_cli(["simulate", "-c", cfg, "--traffic", traffic, "--plot", png])
    fails.check(r.returncode == 0, "--plot: exit %d: %s" % (r.returncode, r.stderr))
    if r.returncode == 0:
        with open(png, "rb") as f:
            fails.check(f.read(8) == b"\x89PNG\r\n\x1a\n", "--plot did not write a PNG")
    empty = tmp.join("empty-path")
    os.makedirs(empty, exist_ok=True)
    env_path = os.environ.get("PATH", "")
    os.environ["PATH"] = empty
    try:
        r = h.herald_cli(["simulate", "-c", cfg, "--traffic", traffic, "--plot", png])
    finally:
        os.environ["PATH"] = env_path
    fails.check(r.returncode == 1 and "gnuplot" in r.stderr and "gnuplot-nox" in r.stderr,
                "--plot without gnuplot: exit %d: %r" % (r.returncode, r.stderr))

    # Bad traffic: exit 2 with file:line: message.
    bad = tmp.join("bad.jsonl")
    with open(bad, "w") as f:
        f.write(TRAFFIC.splitlines()[1] + "\n\n" +
                '{"t": 0, "tenant": "acme", "domain": "gmail.com", "count": -3}\n')
    r = h.herald_cli(["simulate", "-c", cfg, "--traffic", bad])
    fails.check(r.returncode == 2 and r.stderr.startswith(bad + ":3: ") and "count" in r.stderr,
                "bad line: exit %d: %r" % (r.returncode, r.stderr))
    with open(bad, "w") as f:
        f.write('{"t": 0, "tenant": "acme", "domain": "gmail.com"}\nnot json\n')
    r = h.herald_cli(["simulate", "-c", cfg, "--traffic", bad])
    fails.check(r.returncode == 2 and r.stderr.startswith(bad + ":2: not JSON"),
                "not JSON: exit %d: %r" % (r.returncode, r.stderr))
    with open(bad, "w") as f:
        f.write('\n{"t": 0, "tenant": "nobody", "domain": "gmail.com"}\n')
    r = h.herald_cli(["simulate", "-c", cfg, "--traffic", bad])
    fails.check(r.returncode == 2 and r.stderr.startswith(bad + ":2: tenant \"nobody\""),
                "unknown tenant: exit %d: %r" % (r.returncode, r.stderr))

    # Usage and config errors are 2; --help is 0 and documents the schema.
    fails.check(h.herald_cli(["simulate", "-c", cfg]).returncode == 2, "no --traffic: 2")
    fails.check(h.herald_cli(["simulate", "--traffic", traffic]).returncode == 2, "no -c: 2")
    fails.check(h.herald_cli(["simulate", "-c", cfg, "--traffic", tmp.join("none")]).returncode
                == 2, "missing traffic file: 2")
    fails.check(h.herald_cli(["simulate", "-c", cfg, "--traffic", traffic, "--seed", "x"])
                .returncode == 2, "bad --seed: 2")
    r = h.herald_cli(["simulate", "--help"])
    fails.check(r.returncode == 0 and "limit_per_s" in r.stdout and "--plot" in r.stdout,
                "simulate --help")
    r = h.herald_cli(["--help"])
    fails.check("simulate -c FILE --traffic FILE" in r.stdout, "herald --help lists simulate")
    fails.raise_if_any("simulate")


if __name__ == "__main__":
    h.main(run)
