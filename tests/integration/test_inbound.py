"""What comes back after the 250. A tenant with `return_path` sends with a
signed VERP envelope sender (seen at herald-sink's --record); herald's
inbound listener (inbound.listen) takes reports for the return domain:
  1. a DSN (RFC 3464) for the VERP address: one `bounced` note with
     after_delivery, the remote diagnostic, and the recipient on the
     tenant's suppression list (a later job to them is `suppressed`); the
     same DSN again makes no second note;
  2. an ARF complaint (RFC 5965) sent to fbl@ with the original's headers
     attached (no token in the envelope): `complained`, found by the
     original's Message-ID;
  3. a forged token (one character changed) is accepted at RCPT (shape)
     but matched to nothing: no note; an RCPT outside the return domain
     is refused (never an open relay); an auto-reply changes nothing;
  4. a hostile peer (an endless line, a stalled connection) costs only its
     own connection: a report sent meanwhile still makes its note.
  5. a complaint that takes the tenant's complaint rate over
     inbound.complaint_rate suspends it, with the rate as the reason.
Then a private Postfix (see scripts/lib.sh's postfix package) as the
receiving MX: it accepts the message, its next hop refuses it with 550,
and Postfix's own DSN to the VERP address reaches herald's listener:
`bounced` with after_delivery."""

import os
import shutil
import smtplib
import socket
import subprocess
import time

import harness as h
import postfix_conf

DOMAIN = "bounces.herald.test"


def secret(path):
    with open(path, "w") as f:
        f.write("k" * 48 + "\n")
    os.chmod(path, 0o600)


def dsn(to, rcpt, status="5.1.1", diag="550 5.1.1 <%s>: user unknown", orig_mid=None):
    diag = diag % rcpt if "%s" in diag else diag
    orig = ("Message-ID: <%s>\r\nTo: %s\r\nSubject: Reminder\r\n" % (orig_mid, rcpt)
            if orig_mid else "To: %s\r\nSubject: Reminder\r\n" % rcpt)
    return ("From: MAILER-DAEMON@mx.clinic.test\r\nTo: %s\r\n"
            "Subject: Undelivered Mail Returned to Sender\r\n"
            "MIME-Version: 1.0\r\n"
            "Content-Type: multipart/report; report-type=delivery-status; boundary=\"BB\"\r\n\r\n"
            "--BB\r\nContent-Type: text/plain\r\n\r\nThe message could not be delivered.\r\n"
            "--BB\r\nContent-Type: message/delivery-status\r\n\r\n"
            "Reporting-MTA: dns; mx.clinic.test\r\n\r\n"
            "Final-Recipient: rfc822; %s\r\nAction: failed\r\nStatus: %s\r\n"
            "Remote-MTA: dns; store.clinic.test\r\nDiagnostic-Code: smtp; %s\r\n"
            "--BB\r\nContent-Type: text/rfc822-headers\r\n\r\n%s"
            "--BB--\r\n" % (to, rcpt, status, diag, orig))


def arf(rcpt, orig_mid):
    return ("From: feedback@isp.test\r\nTo: fbl@%s\r\nSubject: complaint\r\n"
            "MIME-Version: 1.0\r\n"
            "Content-Type: multipart/report; report-type=feedback-report; boundary=\"AA\"\r\n\r\n"
            "--AA\r\nContent-Type: text/plain\r\n\r\nA user marked this as spam.\r\n"
            "--AA\r\nContent-Type: message/feedback-report\r\n\r\n"
            "Feedback-Type: abuse\r\nUser-Agent: isp-fbl/1.0\r\nVersion: 1\r\n"
            "Original-Rcpt-To: %s\r\nReported-Domain: acme.test\r\n"
            "--AA\r\nContent-Type: text/rfc822-headers\r\n\r\n"
            "Message-ID: <%s>\r\nFrom: reminders@acme.test\r\nTo: %s\r\nSubject: Reminder\r\n"
            "--AA--\r\n" % (DOMAIN, rcpt, orig_mid, rcpt))


def envelope_senders(record, want):
    """recipient -> MAIL FROM, from herald-sink's --record lines
    (<ms> <client ip> <bytes> <mail from> <rcpts>), once every recipient
    in `want` is there (the sink flushes its record twice a second)."""
    deadline = time.monotonic() + h.scaled(10)
    while True:
        out = {}
        for line in open(record).read().splitlines():
            parts = line.split(" ", 4)
            if len(parts) == 5:
                out[parts[4].strip()] = parts[3]
        if all(w in out for w in want) or time.monotonic() > deadline:
            return out
        time.sleep(0.1)


def send(port, mail_from, rcpt, body):
    with smtplib.SMTP("127.0.0.1", port, timeout=h.scaled(10)) as s:
        s.ehlo("mx.clinic.test")
        s.sendmail(mail_from, [rcpt], body.encode())


def wait_event(redis, pred, timeout, what):
    deadline = time.monotonic() + h.scaled(timeout)
    while time.monotonic() < deadline:
        hits = [n for n in h.read_notes(redis) if pred(n)]
        if hits:
            return hits
        time.sleep(0.1)
    raise h.TestFailure("timed out waiting for %s" % what)


def start_postfix(listen_port, bounce_port, refuse_port):
    """A private Postfix: accepts for clinic.test on listen_port, relays it
    to refuse_port (a sink answering 550), and sends its DSNs for the
    return domain to bounce_port (herald's listener)."""
    if not shutil.which("postfix") and not os.path.exists("/usr/sbin/postfix"):
        return None
    import pwd
    d = h.tmpdir().join("postfix")
    for sub in ("etc", "queue", "data"):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
    os.chmod(os.path.dirname(d), 0o755)  # the postfix user must reach its queue
    os.chmod(d, 0o755)
    pw = pwd.getpwnam("postfix")
    os.chown(os.path.join(d, "data"), pw.pw_uid, pw.pw_gid)
    etc = os.path.join(d, "etc")
    with open(os.path.join(etc, "transport"), "w") as f:
        f.write("clinic.test smtp:[127.0.0.1]:%d\n%s smtp:[127.0.0.1]:%d\n"
                % (refuse_port, DOMAIN, bounce_port))
    main_cf = """
compatibility_level = 3.6
queue_directory = {d}/queue
data_directory = {d}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.clinic.test
mydomain = clinic.test
myorigin = clinic.test
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
relay_domains = clinic.test
mynetworks = 127.0.0.0/8
transport_maps = texthash:{etc}/transport
smtp_dns_support_level = disabled
disable_dns_lookups = yes
maillog_file = {d}/maillog
maillog_file_prefixes = {d}
local_transport = error:no local delivery here
smtpd_relay_restrictions = permit_mynetworks, reject
bounce_queue_lifetime = 0
maximal_queue_lifetime = 0
smtputf8_enable = no
alias_maps =
alias_database =
local_recipient_maps =
""".format(d=d, etc=etc)
    with open(os.path.join(etc, "main.cf"), "w") as f:
        f.write(main_cf)
    with open(os.path.join(etc, "master.cf"), "w") as f:
        f.write(postfix_conf.master_cf(listen_port, delivery=True))
    r = subprocess.run(["/usr/sbin/postfix", "-c", etc, "start"], capture_output=True, text=True)
    if r.returncode != 0:
        h.log("postfix did not start: %s" % (r.stderr or r.stdout).strip()[-400:])
        return None
    h.wait_port(listen_port, h.scaled(20))
    return etc


def stop_postfix(etc):
    if etc:
        subprocess.run(["/usr/sbin/postfix", "-c", etc, "stop"], capture_output=True)


def run():
    rec = h.tmpdir().join("sent.record")
    sink = h.start_sink(["--record", rec])
    redis = h.start_redis()
    sec = h.tmpdir().join("inbound.secret")
    secret(sec)
    port, mport = h.free_port(), h.free_port()
    cfg = h.base_config(redis, sink.port,
                        inbound={"listen": ["127.0.0.1:%d" % port], "domains": [DOMAIN],
                                 "secret_file": sec, "timeout": "3s"},
                        metrics={"listen": "127.0.0.1:%d" % mport})
    cfg["tenants"]["acme"]["return_path"] = DOMAIN
    path = h.write_config(cfg)
    jobs = [{"id": "late-1", "tenant": "acme", "to": "gone@clinic.test", "ref": "case-1",
             "subject": "Reminder", "text": "9:00"},
            {"id": "late-2", "tenant": "acme", "to": "angry@clinic.test", "ref": "case-2",
             "subject": "Reminder", "text": "10:00"},
            {"id": "late-3", "tenant": "beta", "to": "plain@clinic.test",
             "subject": "Reminder", "text": "11:00"}]
    h.enqueue(path, jobs)
    herald = h.run_herald(path)
    h.wait_port(port, h.scaled(10), proc=herald.proc if hasattr(herald, "proc") else None)
    notes = h.wait_terminal(redis, [j["id"] for j in jobs], timeout=30, herald=herald)
    by = h.notes_by_job(notes)
    fails = h.Failures()
    senders = envelope_senders(rec, [j["to"] for j in jobs])
    verp1 = senders.get("gone@clinic.test", "")
    verp2 = senders.get("angry@clinic.test", "")
    h.log("envelope senders: %s" % senders)
    fails.check(verp1.startswith("b+") and verp1.endswith("@" + DOMAIN) and len(verp1.split("@")[0]) == 39,
                "acme's MAIL FROM should be b+<37 chars>@%s, is %r" % (DOMAIN, verp1))
    fails.check(senders.get("plain@clinic.test") == "desk@beta.test",
                "beta has no return_path: its MAIL FROM stays its From, is %r"
                % senders.get("plain@clinic.test"))
    fails.check(verp1 != verp2, "each job has its own token")
    mid2 = by["late-2"][-1].get("message_id", "")

    # 1. a DSN for the VERP address
    send(port, "", verp1, dsn(verp1, "gone@clinic.test"))
    hit = wait_event(redis, lambda n: n.get("event") == "bounced" and n.get("job") == "late-1",
                     10, "the late bounce note")[0]
    h.log("late bounce note: %s" % h.format_note(hit))
    fails.check(hit.get("after_delivery") == "true", "after_delivery should be true")
    fails.check(hit.get("code") == "550" and hit.get("enhanced") == "5.1.1",
                "code/enhanced should be 550/5.1.1: %s" % h.format_note(hit))
    fails.check(hit.get("ref") == "case-1" and hit.get("to") == "gone@clinic.test",
                "the note names the job's ref and recipient")
    members = redis.client.smembers("herald:suppress:acme")
    fails.check("gone@clinic.test" in members, "the address should be suppressed: %s" % members)
    send(port, "", verp1, dsn(verp1, "gone@clinic.test"))  # the same DSN again

    # 2. a complaint to fbl@, the token lost, found by the Message-ID
    send(port, "feedback@isp.test", "fbl@" + DOMAIN, arf("angry@clinic.test", mid2))
    hit = wait_event(redis, lambda n: n.get("event") == "complained" and n.get("job") == "late-2",
                     10, "the complaint note")[0]
    h.log("complaint note: %s" % h.format_note(hit))
    fails.check(hit.get("feedback_type") == "abuse", "feedback_type abuse")
    fails.check("angry@clinic.test" in redis.client.smembers("herald:suppress:acme"),
                "a complaint suppresses the address")

    # 3. forged token, open relay, auto-reply
    forged = ("b+" + ("a" if verp1[2] != "a" else "b") + verp1[3:])
    send(port, "", forged, dsn(forged, "plain@clinic.test"))
    try:
        send(port, "x@evil.test", "victim@elsewhere.test", "Subject: relay?\r\n\r\nhi\r\n")
        fails.check(False, "an RCPT outside the return domain must be refused")
    except smtplib.SMTPRecipientsRefused:
        pass
    send(port, "gone@clinic.test", verp1,
         "From: gone@clinic.test\r\nSubject: Out of office\r\nAuto-Submitted: auto-replied\r\n\r\n"
         "I am away.\r\n")

    # 4. hostile peers: an endless line, a stalled connection; a report meanwhile
    stall = socket.create_connection(("127.0.0.1", port))
    flood = socket.create_connection(("127.0.0.1", port))
    flood.sendall(b"EHLO " + b"x" * 20000 + b"\r\n")
    verp3_job = {"id": "late-4", "tenant": "acme", "to": "later@clinic.test",
                 "subject": "Reminder", "text": "12:00"}
    h.enqueue(path, [verp3_job])
    h.wait_terminal(redis, ["late-4"], timeout=20, herald=herald)
    senders = envelope_senders(rec, ["later@clinic.test"])
    verp4 = senders.get("later@clinic.test", "")
    send(port, "", verp4, dsn(verp4, "later@clinic.test", status="5.2.2",
                              diag="552 5.2.2 mailbox full"))
    wait_event(redis, lambda n: n.get("event") == "bounced" and n.get("job") == "late-4", 10,
               "a late bounce while hostile peers are connected")
    stall.close()
    flood.close()

    # a later job to the suppressed address is suppressed
    h.enqueue(path, [{"id": "late-5", "tenant": "acme", "to": "gone@clinic.test",
                      "subject": "Reminder", "text": "again"}])
    n5 = h.wait_terminal(redis, ["late-5"], timeout=20, herald=herald)
    ev5 = [n.get("event") for n in n5 if n.get("job") == "late-5"]
    fails.check(ev5 == ["suppressed"], "a job to a late-bounced address: %s" % ev5)

    # the day's counts: two late bounces (late-1, late-4) and a complaint
    import json
    st = json.loads(h.herald_cli(["stats", "-c", path, "--tenant", "acme", "--json"]).stdout)
    total = st.get("total", {})
    h.log("stats total: late_bounced=%s complained=%s complaint_rate=%s" % (
        total.get("late_bounced"), total.get("complained"), total.get("complaint_rate")))
    fails.check(total.get("late_bounced") == 2 and total.get("complained") == 1,
                "stats should count 2 late bounces and 1 complaint: %s" % total)

    stat = json.loads(h.herald_cli(["status", "-c", path, "--json"]).stdout)
    today = stat.get("after_250_today", {}).get("acme", {})
    fails.check(today.get("late_bounced") == 2 and today.get("complained") == 1
                and today.get("delivered", 0) >= 3,
                "herald status shows today's late bounces and complaints: %s" % today)
    import urllib.request
    scrape = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % mport,
                                    timeout=h.scaled(10)).read().decode()
    for series in ('herald_late_bounces_total{tenant="acme"} 2',
                   'herald_complaints_total{tenant="acme"} 1',
                   'herald_inbound_reports_total{outcome="bounced"} 2',
                   'herald_inbound_reports_total{outcome="already-noted"} 1',
                   'herald_inbound_reports_total{outcome="unmatched"} 1',
                   'herald_inbound_reports_total{outcome="autoreply"} 1'):
        fails.check(series in scrape, "metrics should have %s" % series)
    text = h.herald_cli(["status", "-c", path]).stdout
    fails.check("after the 250 today" in text, "herald status prints the table:\n%s" % text)

    # 5. Postfix as the receiving MX: accepts, its next hop refuses, its DSN comes back
    refuse = h.start_sink(["--permfail", "1"])
    pf_port = h.free_port()
    etc = start_postfix(pf_port, port, refuse.port)
    if etc is None:
        fails.check(False, "the private Postfix did not start (postfix is installed by "
                           "scripts/test)")
    else:
        try:
            cfg2 = h.merged(cfg, {"routes": {"*": "127.0.0.1:%d" % pf_port}})
            path2 = h.write_config(cfg2, "herald-postfix.yaml")
            herald.stop()
            herald = h.run_herald(path2)
            h.enqueue(path2, [{"id": "late-pf", "tenant": "acme", "to": "nobody@clinic.test",
                               "ref": "case-pf", "subject": "Reminder", "text": "13:00"}])
            got = h.wait_terminal(redis, ["late-pf"], timeout=30, herald=herald)
            evs = [n.get("event") for n in got if n.get("job") == "late-pf"]
            fails.check(evs[:1] == ["delivered"], "Postfix should accept the message first: %s"
                        % evs)
            hit = wait_event(redis, lambda n: n.get("event") == "bounced"
                             and n.get("job") == "late-pf", 60, "Postfix's DSN as a note")[0]
            h.log("postfix DSN note: %s" % h.format_note(hit))
            fails.check(hit.get("after_delivery") == "true" and hit.get("enhanced", "").startswith("5."),
                        "Postfix's DSN: after_delivery and a 5.x.x status")
        finally:
            stop_postfix(etc)
    herald.stop()

    all_notes = h.read_notes(redis)
    late1 = [n for n in all_notes if n.get("job") == "late-1" and n.get("event") == "bounced"]
    fails.check(len(late1) == 1, "one late bounce note for late-1, not %d" % len(late1))
    forged_hits = [n for n in all_notes if n.get("job") == "late-3" and n.get("event") != "delivered"]
    fails.check(not forged_hits, "a forged token made notes: %s" % forged_hits)
    fails.raise_if_any("inbound reports")


def complaint_threshold():
    """A tenant whose complaints today pass inbound.complaint_rate (with
    complaint_min_delivered deliveries) is suspended with the rate as the
    reason: `herald suspend --list` shows it, its next job waits with a
    `deferred` note saying so, another tenant's still goes."""
    rec = h.tmpdir().join("ct.record")
    sink = h.start_sink(["--record", rec])
    redis = h.start_redis()
    sec = h.tmpdir().join("ct.secret")
    secret(sec)
    port = h.free_port()
    cfg = h.base_config(redis, sink.port,
                        inbound={"listen": ["127.0.0.1:%d" % port], "domains": [DOMAIN],
                                 "secret_file": sec, "complaint_rate": "10%",
                                 "complaint_min_delivered": 3})
    cfg["tenants"]["acme"]["return_path"] = DOMAIN
    path = h.write_config(cfg, "ct.yaml")
    jobs = [{"id": "ct-%d" % i, "tenant": "acme", "to": "p%d@clinic.test" % i,
             "subject": "Reminder", "text": "9:00"} for i in range(4)]
    h.enqueue(path, jobs)
    herald = h.run_herald(path)
    h.wait_port(port, h.scaled(10))
    notes = h.wait_terminal(redis, [j["id"] for j in jobs], timeout=30, herald=herald)
    by = h.notes_by_job(notes)
    fails = h.Failures()
    mid = by["ct-0"][-1].get("message_id", "")
    send(port, "feedback@isp.test", "fbl@" + DOMAIN, arf("p0@clinic.test", mid))
    wait_event(redis, lambda n: n.get("event") == "complained" and n.get("job") == "ct-0", 10,
               "the complaint note")
    entry = redis.client.hget("herald:suspend", "tenant=acme") or ""
    h.log("suspension: %s" % entry)
    fails.check("complaint rate 25.00% today (1 complaints of 4 delivered) is over 10.00%" in entry,
                "1 complaint of 4 delivered at a 10%% threshold suspends acme: %r" % entry)
    time.sleep(h.scaled(2))  # engines read the suspensions within a second
    listed = h.herald_cli(["suspend", "-c", path, "--list"]).stdout
    fails.check("complaint rate" in listed, "herald suspend --list shows why: %s" % listed)
    h.enqueue(path, [{"id": "ct-after", "tenant": "acme", "to": "q@clinic.test",
                      "subject": "Reminder", "text": "10:00"},
                     {"id": "ct-beta", "tenant": "beta", "to": "r@clinic.test",
                      "subject": "Reminder", "text": "10:00"}])
    wait_event(redis, lambda n: n.get("job") == "ct-after" and n.get("event") == "deferred", 15,
               "the suspended tenant's job held")
    h.wait_terminal(redis, ["ct-beta"], timeout=20, herald=herald)
    held = [n for n in h.read_notes(redis) if n.get("job") == "ct-after"]
    fails.check(held and "complaint rate" in held[0].get("reason", ""),
                "the held job's note says why: %s" % [h.format_note(n) for n in held])
    fails.check(not any(n.get("event") == "delivered" for n in held),
                "a suspended tenant's job must not go")
    herald.stop()
    sink.stop()
    fails.raise_if_any("complaint threshold")


def run_all():
    run()
    complaint_threshold()


if __name__ == "__main__":
    h.main(run_all)
