"""Two processes sending from one egress IP share one reputation factor for
the path: a receiver that throttles the IP (421 above a hidden 10/s, with
herald at 50/s) backs both off to the same factor, where each process
learning on its own would keep its own value (the last writer winning in
Redis). `herald status --json` shows each process's factor for the path."""

import json
import time

import harness as h


def run():
    fails = h.Failures()
    sink = h.start_sink(["--limit-rate", "10"])
    redis = h.start_redis()
    n = 2000
    h.xadd_jobs(redis, [{"id": "j%d" % i, "tenant": "acme", "to": "pat%d@clinic.test" % i,
                         "subject": "Reminder", "text": "9:00"} for i in range(n)])
    cfg = h.base_config(redis, sink.port)
    cfg["engine"]["workers"] = 1
    cfg["engine"]["shutdown_grace"] = "1s"
    cfg["providers"] = {"p": {"mx": ["127.0.0.1"], "rate": "50/s", "connections": 4},
                        "default": {"connections": 4}}
    cfg["delivery"] = {"retry": ["1s"], "max_age": "1h", "timeouts": {"idle": "2s"}}
    nodes = h.run_nodes(cfg, 2)
    procs = [p for p, _ in nodes]
    paths = [path for _, path in nodes]
    factors = {}
    deadline = time.monotonic() + h.scaled(30)
    agree = False
    while time.monotonic() < deadline:
        time.sleep(1)
        st = h.herald_cli(["status", "-c", paths[0], "--json"])
        if st.returncode != 0:
            continue
        doc = json.loads(st.stdout or "{}")
        factors = {}
        for proc in doc.get("processes", []):
            for p in proc.get("pairs", []):
                if p.get("provider") == "p":
                    factors[proc.get("consumer")] = p.get("factor")
        vals = list(factors.values())
        if len(vals) == 2 and max(vals) < 0.9 and max(vals) - min(vals) <= 0.02 * max(vals):
            agree = True
            break
    for p in procs:
        p.check()
        p.stop()
    h.log("factors per process for the path: %s" % factors)
    fails.check(agree, "both processes should back off to one shared factor: %s" % factors)
    fails.raise_if_any("one reputation factor across processes")


if __name__ == "__main__":
    h.main(run)
