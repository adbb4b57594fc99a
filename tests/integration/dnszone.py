#!/usr/bin/python3
"""A private dnsmasq serving test zones on a loopback port, for MX routing
tests. Everything under the zones given in `local` that is not defined
answers NXDOMAIN; `forward` sends a zone to an upstream (point it at a dead
port to get server failures). Started and stopped by PID like every other
server the tests run."""

import os
import socket
import time

import harness as h

DNSMASQ = "/usr/sbin/dnsmasq"


class DnsZone:
    def __init__(self, lines, local=("test",), forward=()):
        if not os.path.exists(DNSMASQ):
            raise h.TestFailure("dnsmasq not installed (package dnsmasq-base)")
        self.port = h.free_port()
        conf = h.tmpdir().unique("dnsmasq") + ".conf"
        body = ["port=%d" % self.port, "listen-address=127.0.0.1", "bind-interfaces",
                "no-resolv", "no-hosts", "no-negcache", "local-ttl=300", "log-queries",
                "log-facility=-"]
        body += ["local=/%s/" % z for z in local]
        body += ["server=/%s/%s" % (z, up) for z, up in forward]
        body += list(lines)
        with open(conf, "w") as f:
            f.write("\n".join(body) + "\n")
        argv = [DNSMASQ, "--keep-in-foreground", "--conf-file=" + conf, "--pid-file="]
        if os.geteuid() == 0:
            argv.append("--user=root")
        self.proc = h.Proc("dnsmasq", argv)
        deadline = time.monotonic() + h.scaled(10)
        while time.monotonic() < deadline:
            if not self.proc.alive():
                raise h.TestFailure("dnsmasq exited: %s" % self.proc.tail(10))
            if self._answers():
                h.log("dnsmasq on port %d (%s)" % (self.port, conf))
                return
            time.sleep(0.05)
        raise h.TestFailure("dnsmasq did not answer on port %d" % self.port)

    def _answers(self):
        # A minimal query (id 1, RD, one question "test" type SOA) over UDP.
        q = b"\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x04test\x00\x00\x06\x00\x01"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(0.2)
            try:
                s.sendto(q, ("127.0.0.1", self.port))
                return len(s.recv(512)) >= 12
            except OSError:
                return False

    def queries(self, name):
        """How many times dnsmasq was asked about `name` (from its query log)."""
        return sum(1 for line in self.proc.read_stderr().splitlines()
                   if "query[" in line and (" %s " % name) in line)

    @property
    def server(self):
        return "127.0.0.1:%d" % self.port

    def stop(self):
        self.proc.stop(timeout=5)
