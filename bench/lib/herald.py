"""The herald parts: closed loop (N jobs queued, then `herald run` until N
notes), its variants (limits, DKIM, STARTTLS), the open-loop --rate mode and
the --idle-conns memory measurement."""
import os
import re
import subprocess
import time

from .common import (EVENTS_KEY, JOBS_KEY, BenchError, cpu_s, enqueue_jobs, job_body,
                     job_fields, log, peak_rss_mb, percentile, progress, read_notes,
                     resp, rss_kb, sink_stats, start_redis, start_sink, wait_until)

# Limits that never bind at bench speed but make herald do all of its
# throttle bookkeeping per message: the pair's GCRA, a recipient cap and a
# tenant rate checked in the admission script.
LIMITS_PROVIDER = "    rate: 100000000/h\n"
LIMITS_TENANT = "    rate: 100000000/h\n"
LIMITS_TOP = "recipients:\n  limit: [1000/h]\n"


def dkim_yaml(tmp, mode):
    """The tenants' `dkim:` lines: a fresh key per algorithm made with the
    openssl command, mode 0600 (herald refuses looser)."""
    if mode == "none":
        return ""
    keys = {}
    for alg in (("rsa", "ed25519") if mode == "dual" else (mode,)):
        path = os.path.join(tmp, "dkim-%s.pem" % alg)
        if not os.path.exists(path):
            argv = ["openssl", "genpkey", "-out", path] + (
                ["-algorithm", "ED25519"] if alg == "ed25519" else
                ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"])
            subprocess.run(argv, check=True, capture_output=True)
            os.chmod(path, 0o600)
        keys[alg] = path
    items = ["{ selector: %s, key: %s, algorithm: %s }" % (
        "s1" if alg == "rsa" else "e1", path, "rsa-sha256" if alg == "rsa" else "ed25519-sha256")
        for alg, path in keys.items()]
    return "    dkim: [%s]\n" % ", ".join(items)


def write_config(path, redis_port, sink_port, connections, dkim="", limits=False, ca_file=None,
                 engine_extra="", delivery_extra="", provider_extra=""):
    tenant_extra = dkim + (LIMITS_TENANT if limits else "")
    delivery = delivery_extra
    if ca_file:
        # required: STARTTLS or no delivery; the sink's name is an IP, so the
        # bench does not ask for host-name verification.
        delivery += "  tls: required\n  ca_file: %s\n" % ca_file
    with open(path, "w") as f:
        f.write("redis:\n  url: redis://127.0.0.1:%d/0\n" % redis_port)
        f.write("engine:\n  workers: 2\n  ehlo: bench.test\n" + engine_extra)
        if delivery:
            f.write("delivery:\n" + delivery)
        f.write('routes:\n  "*": "127.0.0.1:%d"\n' % sink_port)
        f.write("tenants:\n")
        for t in ("bench", "bench2"):
            f.write("  %s:\n    from: %s@bench.test\n    domains: [bench.test]\n%s"
                    % (t, t, tenant_extra))
        f.write("providers:\n  default:\n    connections: %d\n" % connections)
        f.write(provider_extra or "    messages_per_connection: 1000\n")
        if limits:
            f.write(LIMITS_PROVIDER + LIMITS_TOP)


def write_jobs(path, n):
    import json
    text = job_body()
    with open(path, "w") as f:
        for i in range(n):
            kv = job_fields(i, text)
            f.write(json.dumps(dict(zip(kv[0::2], kv[1::2]))) + "\n")


def herald_enqueue(ctx, config, n):
    jobs = os.path.join(ctx.tmp, "jobs.jsonl")
    write_jobs(jobs, n)
    t0 = time.monotonic()
    with open(jobs, "rb") as stdin:
        enq = subprocess.run([ctx.args.herald, "enqueue", "-c", config], stdin=stdin,
                             capture_output=True, timeout=ctx.args.timeout_s)
    took = time.monotonic() - t0
    os.unlink(jobs)
    out = enq.stdout.decode(errors="replace").strip()
    if enq.returncode != 0 or not re.search(r"^enqueued %d$" % n, out, re.M):
        raise BenchError("herald enqueue exited %d, printed %r\n%s" % (
            enq.returncode, out, enq.stderr.decode(errors="replace")[-2000:]))
    return took


def run_herald(ctx, step, conns, dkim="none", limits=False, tls=False):
    """herald end to end. Returns the part's result; ok=False when the notes
    or the sink's count disagree with N."""
    args, procs = ctx.args, ctx.procs
    n = args.jobs
    redis, redis_port, r = start_redis(procs)
    sink, sink_port, stats = start_sink(procs, args.sink, "herald-sink",
                                        tls=ctx.tls_files() if tls else None)
    config = os.path.join(ctx.tmp, "herald.yaml")
    write_config(config, redis_port, sink_port, conns, dkim_yaml(ctx.tmp, dkim), limits,
                 ca_file=ctx.tls_ca() if tls else None)
    enqueue_s = herald_enqueue(ctx, config, n)

    redis0 = cpu_s(redis.pid)
    t0_unix = time.time()
    herald = procs.start("herald", [args.herald, "run", "-c", config])
    notes = [0]

    def done():
        notes[0] = r.cmd("XLEN", EVENTS_KEY)
        return notes[0] >= n

    wall = wait_until("herald", done, args.timeout_s, alive=lambda: herald.poll() is None,
                      show=lambda e: progress("%s: %d/%d notes, %.1f s" % (step, notes[0], n, e)))
    res = {"cpu_s": cpu_s(herald.pid), "peak_rss_mb": peak_rss_mb(herald.pid),
           "redis_cpu_s": cpu_s(redis.pid) - redis0}
    rc = procs.stop(herald, timeout_s=60)
    events, lat, last_at = read_notes(r)
    r.close()
    procs.stop(sink)
    got = sink_stats(stats).get("messages", -1)
    if last_at:
        wall = max(last_at / 1000.0 - t0_unix, 1e-3)
    res.update({"messages": n, "wall_s": wall, "msgs_per_s": n / wall,
                "cpu_s_per_10k": res["cpu_s"] / n * 1e4,
                "redis_cpu_s_per_10k": res["redis_cpu_s"] / n * 1e4,
                "enqueue_s": enqueue_s, "events": events, "sink_messages": got,
                "latency_p50_ms": percentile(lat, 50), "latency_p99_ms": percentile(lat, 99),
                "exit": rc})
    res["ok"] = rc == 0 and events.get("delivered", 0) == n and got == n
    if tls and events.get("tls", 0) != n:
        log("  %s: %d of %d notes name a TLS protocol" % (step, events.get("tls", 0), n))
        res["ok"] = False
    if not res["ok"]:
        log("  %s: exit %s, events %s, sink accepted %d (expected %d delivered)" % (
            step, rc, events, got, n))
    return res


# ---- open loop -------------------------------------------------------------

def run_openloop(ctx, step, conns):
    """herald runs first; an enqueuer adds jobs at a fixed --rate per second
    (pipelined XADDs every 10 ms) for --rate-duration-s or --rate-jobs; the
    notes' latency_ms (stream entry time -> note) gives the distribution."""
    args, procs = ctx.args, ctx.procs
    rate = ctx.rate
    n = args.rate_jobs or int(rate * args.rate_duration_s)
    redis, redis_port, r = start_redis(procs)
    sink, sink_port, stats = start_sink(procs, args.sink, "herald-sink")
    config = os.path.join(ctx.tmp, "herald.yaml")
    write_config(config, redis_port, sink_port, conns)
    herald = procs.start("herald", [args.herald, "run", "-c", config])
    # herald is ready when its consumer group exists on the job stream.
    wait_until("herald start", lambda: _has_group(r), 30, alive=lambda: herald.poll() is None)
    time.sleep(0.5)
    cpu0, redis0 = cpu_s(herald.pid), cpu_s(redis.pid)

    text = job_body()
    sent, t0 = 0, time.monotonic()
    while sent < n:
        if herald.poll() is not None:
            raise BenchError("herald run exited during the open-loop run:\n" +
                             procs.tail("herald"))
        due = min(n, int((time.monotonic() - t0) * rate) + 1)
        if due > sent:
            payload = b"".join(resp("XADD", JOBS_KEY, "*", *job_fields(i, text))
                               for i in range(sent, due))
            r.pipeline(payload, due - sent)
            sent = due
            progress("%s: enqueued %d/%d at %d/s, %.1f s" % (step, sent, n, rate,
                                                             time.monotonic() - t0))
        time.sleep(0.01)
    enq_s = time.monotonic() - t0
    notes = [0]

    def done():
        notes[0] = r.cmd("XLEN", EVENTS_KEY)
        return notes[0] >= n

    wait_until("open loop", done, args.timeout_s, alive=lambda: herald.poll() is None)
    cpu, redis_cpu = cpu_s(herald.pid) - cpu0, cpu_s(redis.pid) - redis0
    rc = procs.stop(herald, timeout_s=60)
    events, lat, _ = read_notes(r)
    r.close()
    procs.stop(sink)
    res = {"messages": n, "rate_target": rate, "rate_achieved": n / enq_s,
           "enqueue_s": enq_s, "events": events, "cpu_s_per_10k": cpu / n * 1e4,
           "redis_cpu_s_per_10k": redis_cpu / n * 1e4, "exit": rc, "latency_ms": lat}
    for q in (50, 90, 99):
        res["p%d_ms" % q] = percentile(lat, q)
    res["max_ms"] = lat[-1] if lat else float("nan")
    res["ok"] = rc == 0 and events.get("delivered", 0) == n and len(lat) == n
    return res


def _has_group(r):
    try:
        return bool(r.cmd("XINFO", "GROUPS", JOBS_KEY))
    except BenchError:
        return False


# ---- idle pooled connections -----------------------------------------------

def run_idle(ctx, step, count):
    """herald opens `count` connections to a sink that answers each reply
    after --idle-latency-ms (so messages overlap and each needs its own
    connection), delivers `count` jobs, then keeps them idle in its pool.
    Memory per idle connection = (VmRSS then - VmRSS idle before the jobs)
    / open connections. The baseline is taken before any job, so job
    processing residue counts against herald."""
    args, procs = ctx.args, ctx.procs
    nofile = count + 4096
    redis, redis_port, r = start_redis(procs)
    sink, sink_port, stats = start_sink(procs, args.sink, "idle-sink", nofile=nofile,
                                        extra=("--latency-ms", str(args.idle_latency_ms)))
    config = os.path.join(ctx.tmp, "herald.yaml")
    write_config(config, redis_port, sink_port, count,
                 engine_extra="  max_inflight: %d\n" % (count + 1000),
                 delivery_extra="  timeouts: { idle: 30m }\n",
                 provider_extra="    messages_per_connection: 1000000\n")
    herald = procs.start("herald", [args.herald, "run", "-c", config], nofile=nofile)
    wait_until("herald start", lambda: _has_group(r), 30, alive=lambda: herald.poll() is None)
    time.sleep(1.0)
    base_kb = rss_kb(herald.pid)
    enqueue_jobs(r, 0, count)
    st = {}
    notes = [0]

    def done():
        notes[0] = r.cmd("XLEN", EVENTS_KEY)
        st.update(sink_stats(stats))
        return notes[0] >= count

    wait_until("idle-conns delivery", done, args.timeout_s, step_s=0.2,
               alive=lambda: herald.poll() is None,
               show=lambda e: progress("%s: %d/%d notes, sink open %s, %.1f s" % (
                   step, notes[0], count, st.get("open", "?"), e)))
    time.sleep(2.5)  # the sink's stats file is rewritten every second
    st = sink_stats(stats)
    open_now = st.get("open", 0)
    idle_kb = rss_kb(herald.pid)
    res = {"messages": count, "connections_wanted": count, "connections_open": open_now,
           "max_concurrent": st.get("max_concurrent", 0), "rss_baseline_kb": base_kb,
           "rss_idle_kb": idle_kb, "peak_rss_mb": peak_rss_mb(herald.pid),
           "sink_messages": st.get("messages", 0)}
    res["kb_per_conn"] = (idle_kb - base_kb) / open_now if open_now else float("nan")
    procs.stop(herald, timeout_s=60)
    events, _, _ = read_notes(r)
    r.close()
    procs.stop(sink)
    res["events"] = events
    res["ok"] = events.get("delivered", 0) == count and open_now >= count
    if open_now < count:
        log("  %s: herald holds %d of %d connections open (sink max concurrent %d)" % (
            step, open_now, count, res["max_concurrent"]))
    return res
