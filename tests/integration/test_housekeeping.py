"""Redis stays tidy: notes older than redis.events_max_age are trimmed from
the events stream, and consumers of the job group whose process is gone
(idle for engine.forget_consumers, nothing pending) are removed; one that
still holds an entry stays until the entry has been claimed and finished.

Before, the events stream grew forever and every process that ever ran
stayed in the group."""

import time

import harness as h


def run():
    fails = h.Failures()
    smtp = h.start_aiosmtpd()
    redis = h.start_redis()
    c = redis.client
    now = int(time.time() * 1000)
    # Old notes, written before anything else, with ids of their own time.
    for i in range(5):
        c.xadd("herald:events", {"event": "delivered", "job": "old-%d" % i, "tenant": "acme",
                                 "at": str(now - 3600 * 1000)},
               id="%d-%d" % (now - 3600 * 1000, i))
    # A group with two ghosts: one idle with nothing, one holding an entry.
    c.xgroup_create("herald:jobs", "herald", id="0", mkstream=True)
    c.execute_command("XGROUP", "CREATECONSUMER", "herald:jobs", "herald", "ghost-empty")
    h.xadd_jobs(redis, [{"id": "held", "tenant": "acme", "to": "held@clinic.test",
                         "subject": "S", "text": "t"}])
    c.xreadgroup("herald", "ghost-holding", {"herald:jobs": ">"}, count=1)
    cfg = h.base_config(redis, smtp.port)
    cfg["redis"]["events_max_age"] = "10m"
    cfg["engine"]["forget_consumers"] = "3s"
    herald = h.run_herald(h.write_config(cfg))
    h.xadd_jobs(redis, [{"id": "fresh", "tenant": "acme", "to": "fresh@clinic.test",
                         "subject": "S", "text": "t"}])
    h.wait_terminal(redis, ["fresh", "held"], timeout=h.scaled(30), herald=herald)
    deadline = time.monotonic() + h.scaled(30)
    names = []
    while time.monotonic() < deadline:
        names = [x["name"].decode() if isinstance(x["name"], bytes) else x["name"]
                 for x in c.xinfo_consumers("herald:jobs", "herald")]
        old = [n for n in h.read_notes(redis, validate=False) if n.get("job", "").startswith("old-")]
        if "ghost-empty" not in names and "ghost-holding" not in names and not old:
            break
        time.sleep(0.5)
    notes = h.read_notes(redis, validate=False)
    fails.check(not [n for n in notes if n.get("job", "").startswith("old-")],
                "notes older than events_max_age should be trimmed")
    fails.check(any(n.get("job") == "fresh" for n in notes), "recent notes stay")
    fails.check("ghost-empty" not in names, "an idle consumer with nothing pending goes: %s"
                % names)
    fails.check("ghost-holding" not in names,
                "a gone consumer's entry is claimed and finished, then it goes too: %s" % names)
    fails.check(any(n.endswith("-0") for n in names), "herald's own consumers stay: %s" % names)
    log = herald.read_stderr()
    fails.check("event=consumer_forgotten consumer=ghost-empty" in log, "logged")
    herald.stop()
    fails.raise_if_any("housekeeping")


if __name__ == "__main__":
    h.main(run)
