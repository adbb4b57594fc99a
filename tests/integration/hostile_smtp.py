"""A misbehaving SMTP server for fault tests, one behaviour per port:

  silent      accept and never say anything (banner timeout)
  slowbanner  send the banner one byte a second
  dropdata    a normal server until DATA, then close after 100 body bytes
  garbage     answer the banner with bytes that are not SMTP
  endless     answer EHLO with a multiline reply that never ends
  busy        greet with "421 4.3.2 too busy" and close
  bigline     answer EHLO with a 1 MB line that has no line ending
  early       send a reply in the same packet as the banner, before any command
  data250     answer DATA with 250 instead of 354 (as if the body were taken)
  stalldata   a normal server until DATA, then say 354 and never read again
              (the client's send makes no progress once the buffers fill)
  trickle     a normal server that reads the body 16 KB every 20 ms
              (slow, but never stalled), then accepts it
  midtls      offer STARTTLS, say 220, then close after a few bytes of TLS;
              a session that does not ask for STARTTLS is served normally
              (messages are counted in the file named by argv[4], if given)

Usage: hostile_smtp.py MODE PORT [HOST]   (prints "ready" when listening)
"""

import socket
import sys
import threading
import time


def recv_line(conn, buf):
    while b"\n" not in buf[0]:
        data = conn.recv(4096)
        if not data:
            raise EOFError
        buf[0] += data
    line, _, rest = buf[0].partition(b"\n")
    buf[0] = rest
    return line


def serve(mode, conn):
    buf = [b""]
    try:
        if mode == "silent":
            time.sleep(60)
            return
        if mode == "slowbanner":
            for ch in b"220 slow.test ESMTP\r\n":
                conn.sendall(bytes([ch]))
                time.sleep(1)
            return
        if mode == "busy":
            conn.sendall(b"421 4.3.2 busy.test too busy, try later\r\n")
            return
        if mode == "suspendtext":
            # Quotes the wording a `suspend` reputation rule matches.
            conn.sendall(b"421 4.7.0 unexpected volume from your IP\r\n")
            return
        if mode == "garbage":
            conn.sendall(b"\x00\xffHELLO THERE\r\nnot smtp at all\r\n")
            time.sleep(30)
            return
        if mode == "early":
            conn.sendall(b"220 hostile.test ESMTP\r\n250 2.0.0 ok before you asked\r\n")
            time.sleep(30)
            return
        conn.sendall(b"220 hostile.test ESMTP\r\n")
        while True:
            line = recv_line(conn, buf).rstrip(b"\r").upper()
            if line.startswith(b"EHLO"):
                if mode == "endless":
                    deadline = time.time() + 30
                    while time.time() < deadline:
                        conn.sendall(b"250-" + b"X" * 200 + b"\r\n")
                    return
                if mode == "bigline":
                    conn.sendall(b"250-" + b"A" * (1 << 20))
                    time.sleep(30)
                    return
                extra = b"250-STARTTLS\r\n" if mode == "midtls" else b""
                conn.sendall(b"250-hostile.test\r\n" + extra + b"250 ENHANCEDSTATUSCODES\r\n")
            elif line.startswith(b"STARTTLS") and mode == "midtls":
                conn.sendall(b"220 2.0.0 go ahead\r\n")
                conn.recv(4096)  # the ClientHello
                conn.sendall(b"\x16\x03\x03\x00")  # half a record header, then gone
                return
            elif line.startswith(b"MAIL") or line.startswith(b"RCPT") or line.startswith(b"RSET"):
                conn.sendall(b"250 2.0.0 ok\r\n")
            elif line.startswith(b"DATA") and mode == "data250":
                conn.sendall(b"250 2.0.0 queued without a body\r\n")
            elif line.startswith(b"DATA") and mode == "stalldata":
                conn.sendall(b"354 go ahead\r\n")
                time.sleep(60)
                return
            elif line.startswith(b"DATA") and mode == "trickle":
                conn.sendall(b"354 go ahead\r\n")
                while b"\r\n.\r\n" not in buf[0][-8:] and b"\r\n.\r\n" not in buf[0]:
                    data = conn.recv(16384)
                    if not data:
                        return
                    buf[0] = buf[0][-8:] + data
                    time.sleep(0.02)
                buf[0] = b""
                if len(sys.argv) > 4:
                    with open(sys.argv[4], "a") as f:
                        f.write("message\n")
                conn.sendall(b"250 2.0.0 stored\r\n")
            elif line.startswith(b"DATA") and mode == "midtls":
                conn.sendall(b"354 go ahead\r\n")
                while b"\r\n.\r\n" not in buf[0]:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf[0] += data
                buf[0] = buf[0].partition(b"\r\n.\r\n")[2]
                if len(sys.argv) > 4:
                    with open(sys.argv[4], "a") as f:
                        f.write("message\n")
                conn.sendall(b"250 2.0.0 stored\r\n")
            elif line.startswith(b"DATA"):
                conn.sendall(b"354 go ahead\r\n")
                got = len(buf[0])
                while got < 100:
                    data = conn.recv(4096)
                    if not data:
                        return
                    got += len(data)
                return  # drop mid-DATA
            elif line.startswith(b"QUIT"):
                conn.sendall(b"221 bye\r\n")
                return
            else:
                conn.sendall(b"500 5.5.1 what\r\n")
    except (EOFError, OSError):
        pass
    finally:
        conn.close()


def main():
    mode, port = sys.argv[1], int(sys.argv[2])
    host = sys.argv[3] if len(sys.argv) > 3 else "127.0.0.1"
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if mode in ("stalldata", "trickle"):
        # Small windows, inherited by accepted sockets: the client's sends
        # stall (or crawl) long before the message is through. Not too
        # small for trickle: a window under one segment has the sender
        # wait on TCP's persist timer, which backs off to seconds.
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096 if mode == "stalldata" else 65536)
    srv.bind((host, port))
    srv.listen(64)
    print("ready", flush=True)
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=serve, args=(mode, conn), daemon=True).start()


if __name__ == "__main__":
    main()
