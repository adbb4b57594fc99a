"""Independent check of a message built by job_build, with Python's email
package: usage check_mime.py DIR. DIR holds `wire` (the DATA payload, dot-
stuffed, with terminator) and the expected decoded values as raw UTF-8 files:
subject, from, from_name, text, html (absent file = not expected)."""
import email
import email.policy
import os
import sys

d = sys.argv[1]


def expected(name):
    p = os.path.join(d, name)
    if not os.path.exists(p):
        return None
    with open(p, "rb") as f:
        return f.read().decode("utf-8")


def norm(s):
    return s.replace("\r\n", "\n").replace("\r", "\n").rstrip("\n")


with open(os.path.join(d, "wire"), "rb") as f:
    wire = f.read()
errors = []
if not wire.endswith(b"\r\n.\r\n"):
    errors.append("wire does not end with CRLF.CRLF")
lines = wire[:-3].split(b"\r\n")
raw = b"\r\n".join(l[1:] if l.startswith(b".") else l for l in lines)
msg = email.message_from_bytes(raw, policy=email.policy.default)
if msg.defects:
    errors.append("message defects: %r" % msg.defects)
if str(msg["subject"]) != expected("subject"):
    errors.append("subject %r != %r" % (str(msg["subject"]), expected("subject")))
addr = msg["from"].addresses[0]
if addr.addr_spec != expected("from"):
    errors.append("from %r != %r" % (addr.addr_spec, expected("from")))
name = expected("from_name") or ""
if addr.display_name != name:
    errors.append("from_name %r != %r" % (addr.display_name, name))
for kind, sub in (("text", "plain"), ("html", "html")):
    want = expected(kind)
    part = msg.get_body(preferencelist=(sub,))
    if want is None:
        if part is not None:
            errors.append("unexpected %s part" % sub)
        continue
    if part is None:
        errors.append("missing %s part" % sub)
        continue
    if part.defects:
        errors.append("%s part defects: %r" % (sub, part.defects))
    got = part.get_content()
    if norm(got) != norm(want):
        errors.append("%s body %r != %r" % (sub, got[:200], want[:200]))
for e in errors:
    print("check_mime:", e)
sys.exit(1 if errors else 0)
