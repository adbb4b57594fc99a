"""A deferred job keeps every field it carries.

The retry copy of a job used to be written with at most 512 script
arguments, so a job with ~250 fields came back from the retry set missing
arbitrary ones (var.*, expires_at, even to). Here a job with 250 var.*
fields is deferred (451 from the receiver): its copy in the retry set holds
all 250, with their values, and to/tenant/subject."""

import time

import harness as h

N = 250


def run():
    fails = h.Failures()
    smtp = h.start_aiosmtpd()
    redis = h.start_redis()
    cfg = h.base_config(redis, smtp.port)
    cfg["delivery"] = {"retry": ["1h"], "max_age": "2d", "timeouts": {"idle": "2s"}}
    herald = h.run_herald(h.write_config(cfg))
    job = {"id": "wide", "tenant": "acme", "to": "defer-kim@clinic.test",
           "subject": "Reminder", "text": "9:00"}
    for i in range(N):
        job["var.f%03d" % i] = "value-%03d" % i
    sid = h.xadd_jobs(redis, [job])[0]
    sid = sid.decode() if isinstance(sid, bytes) else sid
    deadline = time.monotonic() + h.scaled(15)
    copy = {}
    while time.monotonic() < deadline:
        notes = [n for n in h.read_notes(redis) if n.get("job") == "wide"]
        if any(n.get("event") == "deferred" for n in notes):
            for key in redis.client.keys("*job:*"):
                fields = redis.client.hgetall(key)
                if fields:
                    copy = {(k.decode() if isinstance(k, bytes) else k):
                            (v.decode() if isinstance(v, bytes) else v) for k, v in fields.items()}
            if copy:
                break
        time.sleep(0.2)
    fails.check(copy, "the deferred job's retry copy was not found (entry %s)" % sid)
    missing = [("var.f%03d" % i) for i in range(N)
               if copy.get("var.f%03d" % i) != "value-%03d" % i]
    h.log("retry copy: %d fields, %d of %d var.* missing" % (len(copy), len(missing), N))
    fails.check(not missing, "%d var.* fields lost on defer, e.g. %s" % (len(missing), missing[:5]))
    for k in ("to", "tenant", "subject", "text"):
        fails.check(copy.get(k) == job[k], "%s lost on defer: %r" % (k, copy.get(k)))
    herald.stop()
    fails.raise_if_any("fields survive a defer")


if __name__ == "__main__":
    h.main(run)
