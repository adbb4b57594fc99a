#!/usr/bin/python3
"""A transcript-recording SMTP server for herald's integration tests: every
line a client sends, before and after STARTTLS, is appended to a JSON-lines
log with the connection number and whether TLS was on when it arrived, so a
test can assert the exact command sequence (the idea of curl's test data
files). One behaviour per process:

  record   220 banner; EHLO offers PIPELINING, SIZE, 8BITMIME,
           ENHANCEDSTATUSCODES and, before TLS, STARTTLS (--tls-cert/--tls-key
           needed for that); MAIL/RCPT/RSET/NOOP 250, DATA 354 then the body
           up to CRLF.CRLF then 250, QUIT 221 and close. Never CHUNKING.
  greet421 accept, optionally wait for --hold-file to exist (bounded by
           --hold-max seconds), answer the greeting with
           "421 4.3.2 try later" and then only listen: whatever the client
           still sends before it closes (up to --linger seconds) is recorded.

Log records (one JSON object a line, flushed as written):
  {"conn": N, "ev": "connect", "peer": "ip:port"}
  {"conn": N, "ev": "cmd", "tls": bool, "line": "EHLO x"}   (CRLF stripped)
  {"conn": N, "ev": "tls", "version": "TLSv1.3", "cipher": "..."}
  {"conn": N, "ev": "tls-failed", "error": "..."}
  {"conn": N, "ev": "body", "tls": bool, "octets": K}  K = bytes after the
      354 up to and including the final ".\\r\\n" (dot-stuffed, as sent)
  {"conn": N, "ev": "early", "tls": bool, "octets": K}  bytes that arrived
      when the server had not answered yet and must not have (after
      STARTTLS's 220 before the handshake, or with DATA before 354)
  {"conn": N, "ev": "close", "why": "..."}

Usage: transcript_smtp.py --mode MODE --host H --port P --log FILE [...]
Prints "READY <port>" on stdout once listening; exits on SIGTERM/SIGINT.
Only the standard library is used.
"""

import argparse
import json
import os
import signal
import socket
import ssl
import sys
import threading
import time

BANNER = b"220 mx.transcript.test ESMTP recorder\r\n"


class Log:
    def __init__(self, path):
        self.f = open(path, "a", buffering=1)
        self.lock = threading.Lock()
        self.n = 0

    def next_conn(self):
        with self.lock:
            self.n += 1
            return self.n

    def write(self, **rec):
        with self.lock:
            self.f.write(json.dumps(rec, ensure_ascii=False) + "\n")
            self.f.flush()


class Conn:
    def __init__(self, sock, log, n):
        self.sock = sock
        self.log = log
        self.n = n
        self.buf = b""
        self.tls = False

    def send(self, data):
        self.sock.sendall(data)

    def recv_more(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("client closed")
        self.buf += data

    def line(self):
        while b"\n" not in self.buf:
            self.recv_more()
        line, _, self.buf = self.buf.partition(b"\n")
        text = line.rstrip(b"\r").decode("utf-8", "replace")
        self.log.write(conn=self.n, ev="cmd", tls=self.tls, line=text)
        return text

    def early(self):
        if self.buf:
            self.log.write(conn=self.n, ev="early", tls=self.tls, octets=len(self.buf))


def ehlo_reply(c, tls_ctx):
    lines = ["mx.transcript.test", "PIPELINING", "SIZE 10240000", "8BITMIME",
             "ENHANCEDSTATUSCODES"]
    if tls_ctx is not None and not c.tls:
        lines.append("STARTTLS")
    out = "".join("250%s%s\r\n" % ("-" if i < len(lines) - 1 else " ", l)
                  for i, l in enumerate(lines))
    return out.encode()


def serve_record(c, tls_ctx):
    c.send(BANNER)
    while True:
        line = c.line()
        verb = line.split(" ", 1)[0].upper()
        if verb in ("EHLO", "HELO"):
            c.send(ehlo_reply(c, tls_ctx) if verb == "EHLO" else b"250 mx.transcript.test\r\n")
        elif verb == "STARTTLS" and tls_ctx is not None and not c.tls:
            c.early()  # a command pipelined after STARTTLS, in plaintext
            c.buf = b""  # RFC 3207: discard anything received before TLS
            c.send(b"220 2.0.0 Ready to start TLS\r\n")
            # The next bytes must be a TLS handshake record (0x16): peek at
            # them, and record (and drop) any plaintext in front of it.
            c.sock.settimeout(30)
            try:
                peek = c.sock.recv(65536, socket.MSG_PEEK)
            except socket.timeout:
                peek = b""
            if peek and peek[0] != 0x16:
                cut = peek.find(b"\x16")
                junk = c.sock.recv(cut if cut > 0 else len(peek))
                c.log.write(conn=c.n, ev="early", tls=False, octets=len(junk))
            c.sock.settimeout(120)
            try:
                c.sock = tls_ctx.wrap_socket(c.sock, server_side=True)
            except (ssl.SSLError, OSError) as e:
                c.log.write(conn=c.n, ev="tls-failed", error=str(e))
                return "tls handshake failed"
            c.tls = True
            c.log.write(conn=c.n, ev="tls", version=c.sock.version(), cipher=c.sock.cipher()[0])
        elif verb in ("MAIL", "RCPT", "RSET", "NOOP"):
            c.send(b"250 2.0.0 Ok\r\n")
        elif verb == "DATA":
            c.early()  # with PIPELINING, nothing may follow DATA before the 354
            c.send(b"354 End data with <CR><LF>.<CR><LF>\r\n")
            body = c.buf
            c.buf = b""
            while True:
                if body.startswith(b".\r\n"):
                    end = 3
                    break
                i = body.find(b"\r\n.\r\n")
                if i >= 0:
                    end = i + 5
                    break
                data = c.sock.recv(65536)
                if not data:
                    raise EOFError("client closed in DATA")
                body += data
            c.buf = body[end:]
            c.log.write(conn=c.n, ev="body", tls=c.tls, octets=end)
            c.send(b"250 2.0.0 Ok: queued\r\n")
        elif verb == "QUIT":
            c.send(b"221 2.0.0 Bye\r\n")
            return "after QUIT"
        else:
            c.send(b"500 5.5.2 command not recognised\r\n")


def serve_greet421(c, hold_file, hold_max, linger):
    if hold_file:
        deadline = time.monotonic() + hold_max
        while not os.path.exists(hold_file) and time.monotonic() < deadline:
            time.sleep(0.05)
    c.send(b"421 4.3.2 try later\r\n")
    # A real server closes now. Keep listening a while so anything the
    # client sends after a 421 shows up in the transcript.
    c.sock.settimeout(linger)
    try:
        while True:
            c.line()
    except socket.timeout:
        return "linger over (client kept the connection open)"


def handle(args, tls_ctx, log, sock, peer):
    n = log.next_conn()
    log.write(conn=n, ev="connect", peer="%s:%d" % peer[:2])
    sock.settimeout(120)
    c = Conn(sock, log, n)
    why = "?"
    try:
        if args.mode == "record":
            why = serve_record(c, tls_ctx)
        else:
            why = serve_greet421(c, args.hold_file, args.hold_max, args.linger)
    except EOFError as e:
        why = str(e)
    except (OSError, ssl.SSLError) as e:
        why = "%s: %s" % (type(e).__name__, e)
    finally:
        log.write(conn=n, ev="close", why=why)
        try:
            c.sock.close()
        except OSError:
            pass


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mode", choices=["record", "greet421"], required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--hold-file", help="greet421: send the 421 only once this file exists")
    ap.add_argument("--hold-max", type=float, default=30.0)
    ap.add_argument("--linger", type=float, default=5.0)
    args = ap.parse_args()

    tls_ctx = None
    if args.tls_cert:
        tls_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls_ctx.load_cert_chain(args.tls_cert, args.tls_key)
    log = Log(args.log)
    srv = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        srv.bind((args.host, args.port))
    except OSError as e:
        print("bind %s:%d: %s (address in use?)" % (args.host, args.port, e), file=sys.stderr,
              flush=True)
        return 2
    srv.listen(16)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    signal.signal(signal.SIGINT, lambda *_: os._exit(0))
    print("READY %d" % args.port, flush=True)
    while True:
        sock, peer = srv.accept()
        threading.Thread(target=handle, args=(args, tls_ctx, log, sock, peer),
                         daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
