#!/usr/bin/python3
"""A receiving SMTP server for herald's integration tests, run as its own
process (harness.start_aiosmtpd starts it) so a slow or stuck test can never
share an event loop or a GIL with the server it is measuring.

Each accepted message is saved as it arrives, in DIR:
    NNNNNNNN.eml   the exact DATA bytes after dot-unstuffing (CRLF kept)
    NNNNNNNN.json  {"mail_from", "rcpt_tos", "eml", "received_at", "peer"}
The .json is written last and atomically, so a reader that lists *.json only
ever sees complete messages.

Recipient rules pick the reply to RCPT by the local part's prefix
(case-insensitive); the first matching rule wins:
    bounce*  550 5.1.1 user unknown
    defer*   451 4.7.1 try again later
    slow*    accepted after --slow-seconds
--rules JSON replaces them: [{"prefix": "x", "reply": "550 ..."},
{"prefix": "y", "sleep": 2.5}] (a rule may have both: sleep, then reply);
"times": N makes a rule apply to its first N matches only (a receiver
that defers once, then accepts).

TLS and AUTH (for the delivery-security tests):
    --tls-cert/--tls-key   offer STARTTLS with this certificate
    --implicit-tls         speak TLS from the first byte (port 465 style)
    --tls-max-version V    cap the TLS version (1.1 makes every handshake fail)
    --require-starttls     refuse MAIL before STARTTLS
    --auth USER:PASS       offer AUTH PLAIN and LOGIN, accept only these
    --auth-plaintext       allow AUTH without TLS
    --no-smtputf8          do not offer SMTPUTF8 (RFC 6531)
The .json then also records "tls" (protocol/cipher or null), "tls_reused"
and "auth_user".

Prints "READY <port>" on stdout once it accepts connections; exits on
SIGTERM/SIGINT.
"""

import argparse
import asyncio
import json
import os
import signal
import ssl
import sys
import threading
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def default_rules(slow_seconds):
    return [
        {"prefix": "bounce",
         "reply": "550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown in virtual mailbox table"},
        {"prefix": "defer",
         "reply": "451 4.7.1 <{rcpt}>: Recipient address rejected: Greylisted, try again later"},
        {"prefix": "slow", "sleep": slow_seconds},
    ]


class Handler:
    def __init__(self, out_dir, rules):
        self.out_dir = out_dir
        self.rules = rules
        self.seq = 0
        self.lock = threading.Lock()

    def rule_for(self, address):
        local = address.rsplit("@", 1)[0].lower()
        for rule in self.rules:
            if local.startswith(rule["prefix"].lower()):
                if "times" in rule:
                    with self.lock:
                        if rule["times"] <= 0:
                            continue
                        rule["times"] -= 1
                return rule
        return None

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        rule = self.rule_for(address)
        if rule is not None:
            if rule.get("sleep"):
                await asyncio.sleep(float(rule["sleep"]))
            if rule.get("reply"):
                return rule["reply"].replace("{rcpt}", address)
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.seq += 1
            seq = self.seq
        base = os.path.join(self.out_dir, "%08d" % seq)
        content = envelope.original_content
        if content is None:
            content = envelope.content if isinstance(envelope.content, bytes) else b""
        with open(base + ".eml", "wb") as f:
            f.write(content)
        tls = None
        reused = False
        sslobj = server.transport.get_extra_info("ssl_object") if server.transport else None
        if sslobj is not None:
            tls = "%s/%s" % (sslobj.version(), sslobj.cipher()[0])
            reused = bool(sslobj.session_reused)
        meta = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "eml": os.path.basename(base + ".eml"),
            "received_at": time.time(),
            "peer": str(session.peer),
            "tls": tls,
            "tls_reused": reused,
            "auth_user": getattr(session, "auth_data", None) and session.auth_data.login.decode(),
        }
        with open(base + ".json.tmp", "w") as f:
            json.dump(meta, f)
        os.rename(base + ".json.tmp", base + ".json")
        return "250 2.0.0 Ok: queued as H%08d" % seq


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on (any 127.0.0.0/8)")
    ap.add_argument("--dir", required=True)
    ap.add_argument("--slow-seconds", type=float, default=3.0)
    ap.add_argument("--rules", help="JSON list of recipient rules (replaces the defaults)")
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--implicit-tls", action="store_true")
    ap.add_argument("--tls-max-version", choices=["1.1", "1.2"],
                    help="cap the server's TLS version (1.1: no handshake with herald succeeds)")
    ap.add_argument("--require-starttls", action="store_true")
    ap.add_argument("--auth", help="USER:PASS accepted by AUTH")
    ap.add_argument("--auth-plaintext", action="store_true")
    ap.add_argument("--no-smtputf8", action="store_true", help="do not offer SMTPUTF8")
    args = ap.parse_args()

    tls_ctx = None
    if args.tls_cert:
        tls_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls_ctx.load_cert_chain(args.tls_cert, args.tls_key)
        if args.tls_max_version == "1.1":
            tls_ctx.minimum_version = ssl.TLSVersion.TLSv1
            tls_ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        elif args.tls_max_version == "1.2":
            tls_ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    extra = {}
    if tls_ctx is not None and args.implicit_tls:
        extra["ssl_context"] = tls_ctx
    elif tls_ctx is not None:
        extra["tls_context"] = tls_ctx
        extra["require_starttls"] = args.require_starttls
    if args.auth:
        user, password = args.auth.split(":", 1)

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = (isinstance(auth_data, LoginPassword) and auth_data.login.decode() == user
                  and auth_data.password.decode() == password)
            return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

        extra["authenticator"] = authenticator
        # aiosmtpd only counts STARTTLS as TLS; under implicit TLS the whole
        # connection is encrypted already.
        extra["auth_require_tls"] = not (args.auth_plaintext or args.implicit_tls)

    os.makedirs(args.dir, exist_ok=True)
    rules = json.loads(args.rules) if args.rules else default_rules(args.slow_seconds)
    handler = Handler(args.dir, rules)
    controller = Controller(
        handler,
        hostname=args.host,
        port=args.port,
        server_hostname="sink.test",
        decode_data=False,
        enable_SMTPUTF8=not args.no_smtputf8,
        data_size_limit=64 * 1024 * 1024,
        ready_timeout=10.0,
        **extra,
    )

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    controller.start()
    print("READY %d" % args.port, flush=True)
    while not stop.wait(0.5):
        pass
    controller.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
