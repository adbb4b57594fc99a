"""delivery.timeouts.data_block bounds a send that makes no progress.

Before, the option was documented but nothing read it: a receiver that
said 354 and then stopped reading held the connection (and the message)
for the whole data_end (10 minutes by default). Now, with data_block 2 s
and data_end 10 min:
  - a 3 MB reminder to a receiver that stops reading after 354 is
    `deferred` within seconds, the reply naming the stalled send;
  - the same message to a receiver that reads it slowly (16 KB every
    20 ms, several seconds in all, so longer than data_block) is
    `delivered`: the bound is on time without progress, not on the whole
    body."""

import time

import harness as h


def run():
    fails = h.Failures()
    stall_port, trickle_port = h.free_port(), h.free_port()
    h.start_hostile_mx("stalldata", stall_port, "127.0.0.1")
    count = h.tmpdir().join("trickle.count")
    import os
    import sys
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hostile_smtp.py")
    proc = h.Proc("trickle-mx", [sys.executable, script, "trickle", str(trickle_port),
                                 "127.0.0.1", count])
    h.check(h.wait_port(trickle_port, h.scaled(10), proc), "the trickle MX did not start")
    redis = h.start_redis()
    cfg = h.base_config(redis, stall_port)
    cfg["routes"] = {"stall.test": "127.0.0.1:%d" % stall_port,
                     "trickle.test": "127.0.0.1:%d" % trickle_port}
    cfg["engine"]["max_field_bytes"] = "8MiB"
    cfg["engine"]["max_message_bytes"] = "16MiB"
    cfg["delivery"] = {"retry": ["1h"], "max_age": "2d",
                       "timeouts": {"data_block": "2s", "data_end": "10m", "idle": "2s"}}
    herald = h.run_herald(h.write_config(cfg))
    body = ("Reminder: your appointment is tomorrow at 9:00. " * 20 + "\n") * 3000  # ~3 MB
    start = time.monotonic()
    h.xadd_jobs(redis, [
        {"id": "stalled", "tenant": "acme", "to": "pat@stall.test", "subject": "S", "text": body},
        {"id": "slow", "tenant": "acme", "to": "pat@trickle.test", "subject": "S", "text": body}])
    notes = h.wait_terminal(redis, ["slow"], timeout=h.scaled(90), herald=herald)
    deadline = time.monotonic() + h.scaled(30)
    stalled = []
    while time.monotonic() < deadline and not stalled:
        stalled = [n for n in h.read_notes(redis) if n.get("job") == "stalled"]
        time.sleep(0.2)
    took = time.monotonic() - start
    herald.stop()
    n = stalled[0] if stalled else {}
    fails.check(n.get("event") == "deferred" and "no progress" in n.get("reply", ""),
                "the stalled send should be deferred naming it: %s" % h.format_note(n))
    h.log("stalled send deferred after %.1f s" % took)
    fails.check(took < h.scaled(60), "deferred only after %.0f s (data_end is 10 min)" % took)
    slow = [x for x in notes if x.get("job") == "slow"]
    fails.check(slow and slow[-1].get("event") == "delivered",
                "a slow but steady receiver gets the message: %s"
                % (h.format_note(slow[-1]) if slow else "no note"))
    fails.raise_if_any("data_block")


if __name__ == "__main__":
    h.main(run)
