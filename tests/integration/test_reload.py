"""SIGHUP reloads the config while mail flows:
  1. a provider rate raised from 10/s to 40/s governs within about a second
     (measured at the sink), without dropping the connections in use;
  2. a broken config is refused: the error (file:line:col) is logged, the
     old limits stay, herald keeps running and delivers everything;
  3. a change that needs a restart (egress IPs) is refused by name;
  4. the first generation is freed once no worker and no job uses it.
"""

import os
import signal
import time

import harness as h


def rate_between(ts, t0, t1):
    return sum(1 for t in ts if t0 <= t < t1) * 1000.0 / (t1 - t0)


def wait_log(herald, needle, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if needle in herald.read_stderr():
            return True
        herald.check()
        time.sleep(0.05)
    return False


def run():
    fails = h.Failures()
    rec = h.tmpdir().join("reload.record")
    sink = h.start_sink(["--record", rec])
    redis = h.start_redis()
    cfg = h.base_config(redis, sink.port)
    # Four connections: at 40/s two would have to turn a message round in
    # 50 ms, which a loaded ASan build does not always do; this test is
    # about the rate, not the connection limit.
    cfg["providers"] = {"p": {"mx": ["127.0.0.1"], "rate": "10/s", "connections": 4},
                        "default": {"connections": 4}}
    path = h.write_config(cfg, "reload.yaml")
    n = 400
    h.xadd_jobs(redis, [{"id": "j%d" % i, "tenant": "acme", "to": "pat%d@clinic.test" % i,
                         "subject": "Reminder", "text": "9:00"} for i in range(n)])
    herald = h.run_herald(path)
    time.sleep(h.scaled(4))

    # 1. raise the limit
    cfg["providers"]["p"]["rate"] = "40/s"
    h.write_config(cfg, "reload.yaml")
    t_hup = int(time.time() * 1000)
    os.kill(herald.pid, signal.SIGHUP)
    fails.check(wait_log(herald, "event=reloaded generation=2", h.scaled(5)),
                "no event=reloaded after SIGHUP: %s" % herald.tail(5))
    time.sleep(h.scaled(3))

    # 2. a broken config: refused, old (new) limits kept
    with open(path, "a") as f:
        f.write("providers: [unclosed\n")
    os.kill(herald.pid, signal.SIGHUP)
    fails.check(wait_log(herald, "event=reload_refused", h.scaled(5)),
                "a broken config should be refused: %s" % herald.tail(5))
    log = herald.read_stderr()
    refused = [l for l in log.splitlines() if "event=reload_refused" in l]
    fails.check(refused and ("%s:" % path) in refused[0] and "action=kept_running_config" in refused[0],
                "the refusal should name file:line:col and keep the config: %s" % refused)

    # 3. a restart-only change: refused by name
    cfg2 = dict(cfg)
    cfg2["egress"] = {"default": ["127.0.0.1", "127.0.0.3"]}
    h.write_config(cfg2, "reload.yaml")
    os.kill(herald.pid, signal.SIGHUP)
    time.sleep(0.5)
    refused = [l for l in herald.read_stderr().splitlines() if "event=reload_refused" in l]
    fails.check(len(refused) == 2 and "egress changed" in refused[-1],
                "an egress change should be refused by name: %s" % refused)

    h.wait_notes(redis, n, timeout=h.scaled(60), herald=herald)
    # 4. every job read under generation 1 has its note: nothing uses it.
    fails.check(wait_log(herald, "event=generation_freed generation=1", h.scaled(10)),
                "generation 1 should be freed once unused: %s" % herald.tail(5))
    herald.check()
    herald.stop()
    sink.stop()

    ts = sorted(ms for ms, _ in h.sink_record(rec))
    fails.check(len(ts) == n, "sink saw %d messages, want %d" % (len(ts), n))
    before = rate_between(ts, t_hup - 2500, t_hup - 500)
    after = rate_between(ts, t_hup + 1000, t_hup + 3000)
    h.log("rate before SIGHUP %.1f/s (limit 10/s), after %.1f/s (limit 40/s)" % (before, after))
    fails.check(8.0 <= before <= 12.0, "before the reload: %.1f msg/s, want 10 +/- 20%%" % before)
    fails.check(32.0 <= after <= 48.0, "1-3 s after the reload: %.1f msg/s, want 40 +/- 20%%" % after)
    # After the refused reloads the 40/s limit still holds.
    t_end = ts[-1]
    late = rate_between(ts, t_hup + 3500, min(t_end, t_hup + 6500))
    fails.check(32.0 <= late <= 48.0, "after the refused reloads: %.1f msg/s, want 40" % late)
    notes = h.read_notes(redis)
    events = {}
    for note in notes:
        events[note.get("event")] = events.get(note.get("event"), 0) + 1
    fails.check(events.get("delivered") == n, "all %d should be delivered: %s" % (n, events))
    fails.raise_if_any("SIGHUP reload")


if __name__ == "__main__":
    h.main(run)
