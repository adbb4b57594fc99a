"""The Prometheus endpoint (metrics.listen), scraped with curl while and
after herald delivers a known mix: notes by tenant/event and provider,
TLS share, queue gauges, connections, reputation factor per IP x provider,
and the latency histogram; every line is valid exposition text; a bad
path gets 404; a client that never sends its request does not block the
next scrape."""

import re
import socket
import subprocess
import time

import harness as h

LINE = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? '
                  r'[-+]?([0-9.]+([eE][-+]?[0-9]+)?|Inf|NaN)$')


def scrape(port, path="/metrics"):
    cp = subprocess.run(["curl", "-sS", "--max-time", "5", "-w", "\n%{http_code}",
                         "http://127.0.0.1:%d%s" % (port, path)],
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=h.scaled(10))
    body, _, code = cp.stdout.decode().rpartition("\n")
    return int(code or 0), body


def value(body, name, **labels):
    for line in body.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        m = re.match(r'^([^{ ]+)(\{(.*)\})? (\S+)$', line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'([a-zA-Z_]+)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        if all(got.get(k) == v for k, v in labels.items()):
            return float(m.group(4))
    return None


def run():
    fails = h.Failures()
    smtp = h.start_aiosmtpd()
    redis = h.start_redis()
    port = h.free_port()
    cfg = h.base_config(redis, smtp.port, metrics={"listen": "127.0.0.1:%d" % port},
                        providers={"clinic": {"mx": ["127.0.0.1"], "connections": 3},
                                   "default": {"connections": 3}})
    path = h.write_config(cfg)
    jobs = [{"id": "m%d" % i, "tenant": "acme", "to": "pat%d@clinic.test" % i,
             "subject": "Reminder", "text": "9:00"} for i in range(20)]
    jobs += [{"id": "x%d" % i, "tenant": "beta", "to": "bounce%d@clinic.test" % i,
              "subject": "Reminder", "text": "9:00"} for i in range(3)]
    jobs.append({"id": "r1", "tenant": "acme", "to": "not an address", "subject": "x", "text": "y"})
    h.xadd_jobs(redis, jobs)
    herald = h.run_herald(path)
    h.wait_port(port, h.scaled(10), herald)
    h.wait_terminal(redis, [j["id"] for j in jobs], timeout=h.scaled(30), herald=herald)

    # A client that connects and says nothing must not hold up a scrape.
    idle = socket.create_connection(("127.0.0.1", port))
    time.sleep(h.scaled(2.5))  # queue gauges refresh about once a second
    code, body = scrape(port)
    idle.close()
    fails.check(code == 200, "GET /metrics: HTTP %d" % code)
    bad = [l for l in body.splitlines() if l and not l.startswith("#") and not LINE.match(l)]
    fails.check(not bad, "invalid exposition lines: %s" % bad[:5])
    checks = [
        (("herald_notes_total", {"tenant": "acme", "event": "delivered"}), 20),
        (("herald_notes_total", {"tenant": "beta", "event": "bounced"}), 3),
        (("herald_notes_total", {"tenant": "acme", "event": "rejected"}), 1),
        (("herald_provider_notes_total", {"provider": "clinic", "event": "delivered"}), 20),
        (("herald_delivered_tls_total", {"provider": "clinic", "tls": "no"}), 20),
        (("herald_redis_connections_up", {"role": "intake"}), 2),
        (("herald_redis_connections_up", {"role": "notes"}), 2),
        (("herald_deliveries", {"state": "note_parked"}), 0),
        (("herald_config_generation", {}), 1),
        (("herald_queue_entries", {}), 0),
        (("herald_retry_backlog", {}), 0),
        (("herald_delivery_latency_seconds_count", {}), 20),
        (("herald_delivery_latency_seconds_bucket", {"le": "+Inf"}), 20),
        (("herald_reputation_factor", {"ip": "-", "provider": "clinic"}), 1.0),
        (("herald_sent_total", {"ip": "-", "provider": "clinic"}), 23),
    ]
    for (name, labels), want in checks:
        got = value(body, name, **labels)
        fails.check(got is not None and abs(got - want) < 1e-6,
                    "%s%s = %s, want %s" % (name, labels, got, want))
    conns = value(body, "herald_connections_open", ip="-", provider="clinic")
    fails.check(conns is not None and 0 <= conns <= 3, "connections_open within the limit: %s"
                % conns)
    le1 = value(body, "herald_delivery_latency_seconds_bucket", le="60")
    fails.check(le1 == 20, "all 20 delivered within 60 s: %s" % le1)
    for needle in ("# TYPE herald_notes_total counter",
                   "# TYPE herald_delivery_latency_seconds histogram"):
        fails.check(needle in body, "missing %r" % needle)
    fails.check("herald_tls_share" not in body and "per_minute" not in body,
                "no precomputed ratios, base units only")
    fails.check(re.search(r'^herald_build_info\{version="\d+\.\d+\.\d+",commit="[^"]+"\} 1$',
                          body, re.M) is not None, "herald_build_info")
    for series in ("process_cpu_seconds_total", "process_resident_memory_bytes",
                   "process_start_time_seconds", "process_open_fds"):
        fails.check(re.search(r"^%s [0-9.e+]+$" % series, body, re.M) is not None,
                    "missing %s" % series)
    code404, _ = scrape(port, "/nope")
    fails.check(code404 == 404, "unknown path: HTTP %d, want 404" % code404)
    code, text = scrape(port, "/healthz")
    fails.check(code == 200 and text.strip() == "ok", "/healthz: %d %r" % (code, text))
    code, text = scrape(port, "/readyz")
    fails.check(code == 200 and "ready" in text, "/readyz: %d %r" % (code, text))
    # Redis gone: not ready, still alive.
    redis.stop()
    deadline = time.monotonic() + h.scaled(15)
    while time.monotonic() < deadline:
        code, text = scrape(port, "/readyz")
        if code == 503:
            break
        time.sleep(0.2)
    fails.check(code == 503 and "redis" in text, "/readyz with Redis down: %d %r" % (code, text))
    code, _ = scrape(port, "/healthz")
    fails.check(code == 200, "/healthz with Redis down is still 200: %d" % code)
    _, body = scrape(port)
    fails.check(value(body, "herald_redis_connections_up", role="intake") == 0,
                "redis_connections_up drops to 0")
    herald.check()
    herald.stop()
    fails.raise_if_any("metrics endpoint")


if __name__ == "__main__":
    h.main(run)
