/* Living under a service manager: systemd's readiness protocol (sd_notify,
 * a datagram to $NOTIFY_SOCKET; a few lines, no libsystemd) and whether
 * stderr is the journal (then log lines carry a "<N>" priority prefix). */
#ifndef HERALD_SERVICE_H
#define HERALD_SERVICE_H

#include <stdbool.h>

/* Send "KEY=VALUE\n..." to $NOTIFY_SOCKET (a path, or "@name" for the
 * abstract namespace). 0 sent, 1 no NOTIFY_SOCKET (not under systemd), or
 * a negative errno. Never blocks. */
int service_notify(const char *state);
int service_notifyf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* $JOURNAL_STREAM names stderr's device and inode: stderr goes to the
 * journal, which reads a leading "<N>" as the line's syslog priority. */
bool service_stderr_is_journal(void);

#endif
