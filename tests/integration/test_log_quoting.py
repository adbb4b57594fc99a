"""Values from outside reach herald's log only through LOG_VALUE: job ids
(a producer's), recipients, SMTP replies. Jobs whose ids hold quotes, '=',
spaces, ESC and a newline are bounced, deferred, delivered and rejected
against replies that hold quotes and backslashes; every line herald writes
must still be one logfmt line (key=value or key="escaped"), and the job=
and reply= values must decode back to what came in. Before, job=%s was
written raw: `job=q"1 injected=1` forged a field and unbalanced the quotes."""

import re

import harness as h

BOUNCE_REPLY = '550 5.1.1 <"pat"@clinic.test> said \\"no\\" injected=2 \\'
DEFER_REPLY = '451 4.7.1 "busy" try=later'

FIELD = r'[A-Za-z_][A-Za-z0-9_.]*=(?:"(?:[^"\\\x00-\x1f\x7f]|\\.)*"|[^\s"=\\\x00-\x1f\x7f]+)'
LINE = re.compile(r"^ts=\S+ level=\w+(?: %s)*$" % FIELD)
PAIR = re.compile(r'(?:^| )([A-Za-z_][A-Za-z0-9_.]*)=("(?:[^"\\]|\\.)*"|\S+)')


def decode(v):
    if not v.startswith('"'):
        return v
    return re.sub(r"\\(x[0-9a-f]{2}|.)",
                  lambda m: chr(int(m.group(1)[1:], 16)) if m.group(1).startswith("x")
                  and len(m.group(1)) == 3 else m.group(1), v[1:-1])


def fields(line):
    return [(k, decode(v)) for k, v in PAIR.findall(line)]


def job(job_id, to, **more):
    j = {"id": job_id, "tenant": "acme", "to": to, "subject": "Reminder", "text": "See you"}
    j.update(more)
    return j


def run():
    smtp = h.start_aiosmtpd(rules=[
        {"prefix": "bounce", "reply": BOUNCE_REPLY},
        {"prefix": "defer", "reply": DEFER_REPLY, "times": 1},
    ])
    redis = h.start_redis()
    cfg = h.write_config(h.base_config(redis, smtp.port))
    jobs = [
        job('q"1 injected=1 x="', "bounce-1@clinic.test"),
        job('q"2 a=b', "pat@clinic.test"),
        job('q"3 esc\x1b c=d', "no-at"),                     # rejected: bad address
        job('nl\n"4 level=error', "pat4@clinic.test"),       # rejected: LF in id
        job('q"5 \\ z=1', "defer-5@clinic.test"),
    ]
    sids = h.xadd_jobs(redis, jobs)
    names = [j["id"] for j in jobs]
    names[3] = sids[3].decode() if isinstance(sids[3], bytes) else sids[3]  # named by entry
    herald = h.run_herald(cfg, ["--log-level", "debug"])
    h.wait_terminal(redis, names, timeout=60, herald=herald)
    herald.stop()
    err = herald.read_stderr()
    fails = h.Failures()

    lines = err.splitlines()
    bad = [l for l in lines if not LINE.match(l)]
    fails.check(not bad, "%d of %d log lines are not one logfmt line, e.g.:\n%s"
                % (len(bad), len(lines), "\n".join(repr(l) for l in bad[:5])))
    fails.check("\x1b" not in err and "\r" not in err, "raw ESC or CR in herald's log")

    seen = {}
    for l in lines:
        f = fields(l)
        ev = dict(f).get("event")
        for k, v in f:
            if k == "job":
                seen.setdefault(v, set()).add(ev)
    for name, want in zip(names, ["bounced", "delivered", "rejected", "rejected", "deferred"]):
        fails.check(want in seen.get(name, set()),
                    "no event=%s line whose job= decodes to %r; job values seen: %s"
                    % (want, name, sorted(seen)[:12]))
    replies = [dict(fields(l)).get("reply") for l in lines if "event=bounced" in l]
    # The code goes in code=; reply= is the rest, exactly.
    fails.check(BOUNCE_REPLY[4:] in replies,
                "event=bounced reply= should decode to the server's reply %r: %s"
                % (BOUNCE_REPLY, replies))
    replies = [dict(fields(l)).get("reply") for l in lines if "event=deferred" in l]
    fails.check(DEFER_REPLY[4:] in replies,
                "event=deferred reply= should decode to %r: %s" % (DEFER_REPLY, replies))
    fails.raise_if_any("log quoting")


if __name__ == "__main__":
    h.main(run)
