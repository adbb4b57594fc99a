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
{"prefix": "y", "sleep": 2.5}] (a rule may have both: sleep, then reply).

Prints "READY <port>" on stdout once it accepts connections; exits on
SIGTERM/SIGINT.
"""

import argparse
import asyncio
import json
import os
import signal
import sys
import threading
import time

from aiosmtpd.controller import Controller


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
        meta = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "eml": os.path.basename(base + ".eml"),
            "received_at": time.time(),
            "peer": str(session.peer),
        }
        with open(base + ".json.tmp", "w") as f:
            json.dump(meta, f)
        os.rename(base + ".json.tmp", base + ".json")
        return "250 2.0.0 Ok: queued as H%08d" % seq


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--slow-seconds", type=float, default=3.0)
    ap.add_argument("--rules", help="JSON list of recipient rules (replaces the defaults)")
    args = ap.parse_args()

    os.makedirs(args.dir, exist_ok=True)
    rules = json.loads(args.rules) if args.rules else default_rules(args.slow_seconds)
    handler = Handler(args.dir, rules)
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=args.port,
        server_hostname="sink.test",
        decode_data=False,
        enable_SMTPUTF8=True,
        data_size_limit=64 * 1024 * 1024,
        ready_timeout=10.0,
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
