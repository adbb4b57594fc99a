#!/usr/bin/python3
"""Verify DKIM signatures with verifiers that only ask the system resolver
(dkimverify from python3-dkim, opendkim-testmsg from opendkim-tools):
run inside `unshare -mn` (a private network and mount namespace), bring up
loopback, start dnsmasq on 127.0.0.1:53 serving the test zone, bind-mount a
resolv.conf pointing at it over /etc/resolv.conf (private to the
namespace), then run each verifier on each message file.

usage: unshare -mn python3 dkim_ns.py DNSMASQ_CONF OUT_JSON MSG...
Writes {"msg path": {"dkimverify": [rc, output], "opendkim": [rc, output]}}.
"""

import json
import os
import socket
import subprocess
import sys
import time


def answers():
    q = b"\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x04test\x00\x00\x06\x00\x01"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.2)
        try:
            s.sendto(q, ("127.0.0.1", 53))
            return len(s.recv(512)) >= 12
        except OSError:
            return False


def run(argv, data):
    cp = subprocess.run(argv, input=data, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                        timeout=60)
    return [cp.returncode, cp.stdout.decode("utf-8", "replace")[-2000:]]


def main():
    conf, out_path, msgs = sys.argv[1], sys.argv[2], sys.argv[3:]
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    resolv = conf + ".resolv"
    with open(resolv, "w") as f:
        f.write("nameserver 127.0.0.1\noptions timeout:2 attempts:2\n")
    subprocess.run(["mount", "--bind", resolv, "/etc/resolv.conf"], check=True)
    argv = ["/usr/sbin/dnsmasq", "--keep-in-foreground", "--conf-file=" + conf, "--pid-file=",
            "--port=53"]
    if os.geteuid() == 0:
        argv.append("--user=root")
    dns = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not answers():
            if dns.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("dnsmasq did not start in the namespace")
            time.sleep(0.05)
        results = {}
        for m in msgs:
            with open(m, "rb") as f:
                data = f.read()
            results[m] = {
                "dkimverify": run(["/usr/bin/dkimverify"], data),
                "opendkim": run(["/usr/sbin/opendkim-testmsg"], data),
            }
        with open(out_path, "w") as f:
            json.dump(results, f)
    finally:
        dns.terminate()
        dns.wait(5)


if __name__ == "__main__":
    main()
