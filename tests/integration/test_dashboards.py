"""The dashboard and the alerts that ship in contrib/ work with what herald
exports: `promtool check rules` accepts the alerts and `promtool test
rules` shows each one firing on the series that should raise it; every
PromQL expression in contrib/grafana/herald.json parses (checked as
recording rules) and names only series herald exports; and a real scrape
of a running herald passes `promtool check metrics`."""

import json
import os
import re
import shutil
import subprocess

import harness as h

PROM = os.path.join(h.SRC, "contrib", "prometheus")


def run():
    if not shutil.which("promtool"):
        raise h.Skip("promtool not installed (Debian package prometheus)")
    fails = h.Failures()
    for args in (["check", "rules", "alerts.yml"], ["test", "rules", "alerts_test.yml"]):
        r = subprocess.run(["promtool"] + args, cwd=PROM, capture_output=True, text=True,
                           timeout=120)
        fails.check(r.returncode == 0, "promtool %s: %s %s" % (" ".join(args), r.stdout[-800:],
                                                               r.stderr[-800:]))

    dash = json.load(open(os.path.join(h.SRC, "contrib", "grafana", "herald.json")))
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    fails.check(len(exprs) >= 10, "the dashboard has its panels: %d expressions" % len(exprs))
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": "dashboard:expr_%d" % i, "expr": e.replace("$tenant", ".*")}
        for i, e in enumerate(exprs)]}]}
    path = h.tmpdir().join("dashboard-rules.yml")
    with open(path, "w") as f:
        json.dump(rules, f)  # JSON is YAML
    r = subprocess.run(["promtool", "check", "rules", path], capture_output=True, text=True,
                       timeout=60)
    fails.check(r.returncode == 0, "dashboard expressions: %s %s" % (r.stdout[-800:],
                                                                     r.stderr[-800:]))

    # A real scrape: lint it, and every series the dashboard and the alerts
    # use must be there.
    smtp = h.start_aiosmtpd()
    redis = h.start_redis()
    port = h.free_port()
    cfg = h.base_config(redis, smtp.port)
    cfg["metrics"] = {"listen": "127.0.0.1:%d" % port}
    herald = h.run_herald(h.write_config(cfg))
    h.wait_port(port, h.scaled(10), herald)
    h.xadd_jobs(redis, [{"id": "d1", "tenant": "acme", "to": "a@clinic.test", "subject": "S",
                         "text": "t"}])
    h.wait_terminal(redis, ["d1"], timeout=h.scaled(30), herald=herald)
    import time
    time.sleep(h.scaled(2))
    body = subprocess.run(["curl", "-sS", "--max-time", "5", "http://127.0.0.1:%d/metrics" % port],
                          capture_output=True, text=True, timeout=30).stdout
    herald.stop()
    r = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True,
                       text=True, timeout=60)
    fails.check(r.returncode == 0, "promtool check metrics: %s %s" % (r.stdout[-1500:],
                                                                      r.stderr[-1500:]))
    alerts = open(os.path.join(PROM, "alerts.yml")).read()
    used = set(re.findall(r"\b(herald_[a-z_]+)", " ".join(exprs) + alerts))
    # Written only once a reload has run.
    after_reload = {"herald_config_last_reload_success"}
    missing = sorted(u for u in used - after_reload
                     if not re.search(r"^%s[{ ]" % re.escape(u), body, re.M))
    fails.check(not missing, "series used but not exported: %s" % missing)
    fails.raise_if_any("dashboards and alerts")


if __name__ == "__main__":
    h.main(run)
