"""What bench/throughput prints and writes: the run's identity (commit,
kernel, CPU), per-part medians with min-max, the ratios the issue sets
targets for, the JSON file and the gnuplot charts."""
import datetime
import os
import platform
import shutil
import subprocess
import sys

from .common import MSG_LEN, ROOT, log


def run_meta():
    def git(*a):
        try:
            return subprocess.run(["git", "-C", ROOT, *a], capture_output=True,
                                  timeout=10).stdout.decode().strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain")),
            "kernel": platform.release(), "cpu_model": model, "cores": os.cpu_count(),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "argv": sys.argv[1:], "message_bytes": MSG_LEN, "loadavg_start": loadavg()}


def loadavg():
    """The 1, 5 and 15 minute load averages: on a shared machine they say
    how much else was running."""
    try:
        with open("/proc/loadavg") as f:
            return [float(x) for x in f.read().split()[:3]]
    except (OSError, ValueError):
        return []


def openssl_sign_rate(alg, seconds=3):
    """One process's sign/s from `openssl speed -seconds S rsa2048|ed25519`."""
    try:
        out = subprocess.run(["openssl", "speed", "-seconds", str(seconds), alg],
                             capture_output=True, timeout=120).stdout.decode()
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in out.splitlines():
        parts = line.split()
        try:
            if alg == "rsa2048" and line.startswith("rsa 2048 bits") and len(parts) >= 6:
                return float(parts[5])
            if alg == "ed25519" and "(Ed25519)" in line:
                return float(parts[-2])
        except ValueError:
            return None
    return None


def stats(values):
    v = sorted(x for x in values if x == x)
    if not v:
        return None
    mid = len(v) // 2
    med = v[mid] if len(v) % 2 else (v[mid - 1] + v[mid]) / 2
    return {"median": med, "min": v[0], "max": v[-1], "n": len(v)}


METRICS = ("msgs_per_s", "cpu_s_per_10k", "peak_rss_mb", "redis_cpu_s_per_10k")


def summarise(runs):
    """{(part, conns): {metric: stats}} over the repeats that produced a result."""
    out = {}
    for r in runs:
        if "msgs_per_s" not in r:
            continue
        key = (r["part"], r["connections"])
        out.setdefault(key, {m: [] for m in METRICS})
        for m in METRICS:
            if m in r:
                out[key][m].append(r[m])
    return {k: {m: stats(v) for m, v in d.items() if v} for k, d in out.items()}


def fmt_range(s, f="%.0f"):
    if not s:
        return "-"
    if s["n"] == 1:
        return f % s["median"]
    return (f + " [" + f + "-" + f + "]") % (s["median"], s["min"], s["max"])


def ratio(summary, a, b, conns, metric="msgs_per_s"):
    x, y = summary.get((a, conns), {}).get(metric), summary.get((b, conns), {}).get(metric)
    if not x or not y or not y["median"]:
        return None
    return x["median"] / y["median"]


def report(res, parts, conns_list):
    summary = summarise(res["runs"])
    log("")
    if not parts:
        conns_list = []
    else:
        log("results: %d jobs (peers %d), %d-byte messages, %d repeat(s); median [min-max]" % (
            res["args"]["jobs"], res["args"]["peer_jobs"] or res["args"]["jobs"], MSG_LEN,
            res["args"]["repeat"]))
        log("  %-18s %5s %24s %20s %18s %14s" % ("part", "conns", "msgs/s", "CPU s/10k",
                                                 "peak RSS MB", "Redis CPU/10k"))
    for conns in conns_list:
        for part in parts:
            s = summary.get((part, conns))
            if not s:
                log("  %-18s %5d %24s" % (part, conns, "did not run"))
                continue
            log("  %-18s %5d %24s %20s %18s %14s" % (
                part, conns, fmt_range(s.get("msgs_per_s")),
                fmt_range(s.get("cpu_s_per_10k"), "%.3f"),
                fmt_range(s.get("peak_rss_mb"), "%.1f"),
                fmt_range(s.get("redis_cpu_s_per_10k"), "%.3f")))
    ratios = {}
    cores = res["meta"]["cores"]
    for conns in conns_list:
        r = {}
        for name, a, b, m, target in (
                ("herald/wire", "herald", "wire", "msgs_per_s", ">= 1.0"),
                ("herald/nodemailer msgs/s", "herald", "nodemailer", "msgs_per_s", ">= 10"),
                ("herald/nodemailer CPU per msg", "herald", "nodemailer", "cpu_s_per_10k",
                 "<= 0.1"),
                ("herald/postfix-relay msgs/s", "herald", "postfix-relay", "msgs_per_s", ""),
                ("herald/ceiling", "herald", "ceiling", "msgs_per_s", ""),
                ("limits/herald", "limits", "herald", "msgs_per_s", ">= 0.95"),
                ("starttls/plaintext", "herald-tls", "herald", "msgs_per_s", ">= 0.85"),
                ("postfix-relay starttls/plaintext", "postfix-relay-tls", "postfix-relay",
                 "msgs_per_s", ""),
                ("nodemailer starttls/plaintext", "nodemailer-tls", "nodemailer", "msgs_per_s",
                 ""),
                ("ed25519/plaintext", "herald-ed25519", "herald", "msgs_per_s", ">= 0.8")):
            v = ratio(summary, a, b, conns, m)
            if v is not None:
                r[name] = v
                log("  %-36s at %3d conns: %6.3f  (target %s)" % (name, conns, v, target or "-"))
        rsa = summary.get(("herald-rsa", conns), {}).get("msgs_per_s")
        sign = res.get("openssl", {}).get("rsa2048_sign_per_s")
        if rsa and sign:
            v = rsa["median"] / (cores * sign)
            r["herald-rsa/(cores x openssl rsa2048 sign/s)"] = v
            log("  %-36s at %3d conns: %6.3f  (target >= 0.9; %d cores x %.0f sign/s)" % (
                "herald-rsa/(cores x sign/s)", conns, v, cores, sign))
        if r:
            ratios[str(conns)] = r
    res["summary"] = {"%s@%d" % k: v for k, v in summary.items()}
    res["ratios"] = ratios
    if res.get("tls_note"):
        log("  note: " + res["tls_note"])
    ol = res.get("open_loop")
    if ol and "p99_ms" in ol:
        log("  open loop at %d/s (achieved %.0f/s, %d jobs): latency enqueue->note p50 %.1f, "
            "p90 %.1f, p99 %.1f, max %.1f ms (target p99 < 20 ms at half the max)" % (
                ol["rate_target"], ol["rate_achieved"], ol["messages"], ol["p50_ms"],
                ol["p90_ms"], ol["p99_ms"], ol["max_ms"]))
        h = summary.get(("herald", ol["connections"]), {}).get("msgs_per_s")
        if h:
            ol["rate_vs_herald_max"] = ol["rate_target"] / h["median"]
            log("    the rate is %.2f x herald's closed-loop median at %d conns" % (
                ol["rate_vs_herald_max"], ol["connections"]))
    idle = res.get("idle_conns")
    if idle and "kb_per_conn" in idle:
        log("  idle connections: %d open of %d wanted; herald RSS %.1f -> %.1f MB: %.1f KB per "
            "idle connection (target < 64 KB)" % (
                idle["connections_open"], idle["connections_wanted"],
                idle["rss_baseline_kb"] / 1024, idle["rss_idle_kb"] / 1024, idle["kb_per_conn"]))
    return summary


# ---- plots -----------------------------------------------------------------

def plot(dirname, summary, parts, conns_list, latency):
    """PNG bar charts (median, min-max whiskers) and the latency CDF."""
    if not shutil.which("gnuplot"):
        log("plots: gnuplot is not installed (apt-get install gnuplot-nox); skipped")
        return []
    os.makedirs(dirname, exist_ok=True)
    made = []
    for metric, title, fname, yaxis in (
            ("msgs_per_s", "messages per second", "throughput", "set yrange [0:*]"),
            ("cpu_s_per_10k", "sender CPU seconds per 10k messages (log scale)", "cpu",
             "set logscale y\nset yrange [0.05:*]")):
        dat = os.path.join(dirname, fname + ".dat")
        rows = 0
        with open(dat, "w") as f:
            for conns in conns_list:
                for part in parts:
                    s = summary.get((part, conns), {}).get(metric)
                    if s:
                        f.write('"%s %d conns" %g %g %g\n' % (part, conns, s["median"], s["min"],
                                                        s["max"]))
                        rows += 1
        if not rows:
            continue
        png = os.path.join(dirname, fname + ".png")
        script = """set terminal png size 1100,620 noenhanced
set output '%s'
set title '%s (median, whiskers min-max)'
set style fill solid 0.6 border -1
set boxwidth 0.6
%s
set xtics rotate by 60 right nomirror
set grid ytics
plot '%s' using 0:2:xtic(1) with boxes lc rgb '#4a7ab8' notitle, \\
     '' using 0:2:3:4 with yerrorbars lc rgb 'black' pt 0 notitle
""" % (png, title, yaxis, dat)
        if _gnuplot(script):
            made.append(png)
    if latency:
        dat = os.path.join(dirname, "latency-cdf.dat")
        n = len(latency)
        with open(dat, "w") as f:
            for i, v in enumerate(latency):
                f.write("%g %g\n" % (v, (i + 1) / n))
        png = os.path.join(dirname, "latency-cdf.png")
        script = """set terminal png size 900,520 noenhanced
set output '%s'
set title 'open loop: enqueue -> delivered note latency (CDF, %d jobs)'
set xlabel 'latency ms'
set ylabel 'fraction of jobs'
set grid
set xrange [0:*]
set yrange [0:1]
plot '%s' using 1:2 with lines lw 2 notitle
""" % (png, n, dat)
        if _gnuplot(script):
            made.append(png)
    for m in made:
        log("plot: " + m)
    return made


def _gnuplot(script):
    p = subprocess.run(["gnuplot"], input=script.encode(), capture_output=True, timeout=60)
    if p.returncode != 0:
        log("plots: gnuplot failed: " + p.stderr.decode(errors="replace")[-500:])
    return p.returncode == 0
