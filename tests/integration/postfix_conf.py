"""The master.cf of the private Postfix instances the tests start
(test_smuggling: held mail; test_inbound: a relay that bounces): every
service unchrooted (the queue lives in the test's temp dir, not
/var/spool), smtpd on a loopback port of the test's choosing, and the
smtp delivery agents only when the instance must send mail on."""

_SERVICES = """\
pickup    unix  n  -  n  60    1  pickup
cleanup   unix  n  -  n  -     0  cleanup
qmgr      unix  n  -  n  300   1  qmgr
rewrite   unix  -  -  n  -     -  trivial-rewrite
bounce    unix  -  -  n  -     0  bounce
defer     unix  -  -  n  -     0  bounce
trace     unix  -  -  n  -     0  bounce
verify    unix  -  -  n  -     1  verify
flush     unix  n  -  n  1000? 0  flush
proxymap  unix  -  -  n  -     -  proxymap
showq     unix  n  -  n  -     -  showq
error     unix  -  -  n  -     -  error
retry     unix  -  -  n  -     -  error
discard   unix  -  -  n  -     -  discard
anvil     unix  -  -  n  -     1  anvil
scache    unix  -  -  n  -     1  scache
postlog   unix-dgram n - n -   1  postlogd
"""

_DELIVERY = """\
smtp      unix  -  -  n  -     -  smtp
relay     unix  -  -  n  -     -  smtp
tlsmgr    unix  -  -  n  1000? 1  tlsmgr
"""


def master_cf(port, delivery=False):
    return ("127.0.0.1:%d inet n - n - - smtpd\n" % port) + _SERVICES + (
        _DELIVERY if delivery else "")
