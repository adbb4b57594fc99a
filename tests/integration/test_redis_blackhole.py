"""A Redis that stops answering without closing (a dead link, a paused VM,
a firewall dropping packets) costs herald its connections, not its intake.

Before, the engine's Redis connections had no command deadline and no
keepalive: once the path went silent, intake waited on its XREADGROUP
forever, and jobs enqueued after the path came back were never read.
Here herald talks to Redis through a proxy that can black-hole: every
connection open at that moment stays open and silent forever (bytes are
swallowed both ways), later connections are forwarded normally.
  1. forward: a job is delivered;
  2. black-hole for a few seconds (redis.command_timeout 3s): herald logs
     redis_timeout for its connections;
  3. forward again (the old connections stay dead): a job enqueued now,
     straight into Redis, is delivered within seconds on new connections.
Also: a Redis whose listen queue is full (SYNs dropped) makes the connect
time out (redis.connect_timeout) instead of hanging."""

import socket
import threading
import time

import harness as h


class Proxy:
    def __init__(self, target_port):
        self.target = target_port
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(64)
        self.port = self.srv.getsockname()[1]
        self.blackhole = False
        self.conns = []  # [client, upstream, dead]
        self.lock = threading.Lock()
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            u = socket.create_connection(("127.0.0.1", self.target))
            state = {"dead": self.blackhole}
            with self.lock:
                self.conns.append(state)
            threading.Thread(target=self.pump, args=(c, u, state), daemon=True).start()
            threading.Thread(target=self.pump, args=(u, c, state), daemon=True).start()

    def pump(self, a, b, state):
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                if state["dead"]:
                    continue  # swallowed: the other side hears nothing, ever
                b.sendall(data)
        except OSError:
            pass
        if not state["dead"]:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def set_blackhole(self, on):
        with self.lock:
            self.blackhole = on
            if on:
                for st in self.conns:
                    st["dead"] = True


def job(i):
    return {"id": i, "tenant": "acme", "to": "%s@clinic.test" % i, "subject": "S", "text": "t"}


def run():
    fails = h.Failures()
    smtp = h.start_aiosmtpd()
    redis = h.start_redis()
    proxy = Proxy(redis.port)
    cfg = h.base_config(redis, smtp.port)
    cfg["redis"] = {"url": "redis://127.0.0.1:%d/0" % proxy.port, "command_timeout": "3s",
                    "connect_timeout": "1s"}
    herald = h.run_herald(h.write_config(cfg))
    h.xadd_jobs(redis, [job("before")])
    h.wait_terminal(redis, ["before"], timeout=h.scaled(30), herald=herald)

    proxy.set_blackhole(True)
    time.sleep(h.scaled(6))
    log = herald.read_stderr()
    fails.check("event=redis_timeout conn=intake" in log,
                "a silent Redis should cost the intake connection (redis_timeout)")
    proxy.set_blackhole(False)
    h.xadd_jobs(redis, [job("after")])
    t0 = time.monotonic()
    notes = h.wait_terminal(redis, ["after"], timeout=h.scaled(30), herald=herald)
    took = time.monotonic() - t0
    n = [x for x in notes if x.get("job") == "after"]
    fails.check(n and n[-1].get("event") == "delivered",
                "the job enqueued after the black hole should be delivered: %s"
                % (h.format_note(n[-1]) if n else "no note"))
    h.log("delivered %.1f s after the path came back" % took)
    herald.stop()

    # Connect timeout: a listener whose accept queue is full drops SYNs.
    full = socket.socket()
    full.bind(("127.0.0.1", 0))
    full.listen(0)
    port = full.getsockname()[1]
    fillers = []
    for _ in range(4):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        fillers.append(s)
    time.sleep(0.3)
    cfg["redis"] = {"url": "redis://127.0.0.1:%d/0" % port, "connect_timeout": "1s"}
    herald = h.run_herald(h.write_config(cfg, "full.yaml"))
    deadline = time.monotonic() + h.scaled(15)
    seen = False
    while time.monotonic() < deadline and not seen:
        seen = "timed out" in herald.read_stderr() or "timeout" in herald.read_stderr()
        time.sleep(0.2)
    fails.check(seen, "connecting to a Redis that never accepts should time out: %s"
                % herald.read_stderr()[-600:])
    herald.stop(expect_clean=False)
    fails.raise_if_any("black-holed redis")


if __name__ == "__main__":
    h.main(run)
