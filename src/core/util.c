/* Clocks, error strings, key=value logging and secret files. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "herald/core.h"

enum log_level log_min_level = LOG_INFO;
bool log_journal_prefix;

static const char *const err_names[HERR_COUNT - HERR_BASE] = {
    [0] = "unknown error",
    [HERR_PROTOCOL - HERR_BASE] = "protocol violation",
    [HERR_TOO_LONG - HERR_BASE] = "input too long",
    [HERR_MALFORMED - HERR_BASE] = "malformed input",
    [HERR_TIMEOUT - HERR_BASE] = "timed out",
    [HERR_CLOSED - HERR_BASE] = "connection closed by peer",
    [HERR_REDIS - HERR_BASE] = "redis error reply",
    [HERR_CONFIG - HERR_BASE] = "invalid configuration",
    [HERR_AGAIN - HERR_BASE] = "need more input",
    [HERR_TLS - HERR_BASE] = "TLS failure",
    [HERR_DNS - HERR_BASE] = "DNS failure",
    [HERR_BAD_MAC - HERR_BASE] = "token MAC does not verify",
    [HERR_EXPIRED - HERR_BASE] = "token expired",
    [HERR_FUTURE - HERR_BASE] = "token dated in the future",
};

const char *herald_strerror(int err)
{
    if (err < 0)
        err = -err;
    if (err >= HERR_BASE && err < HERR_COUNT)
        return err_names[err - HERR_BASE] ? err_names[err - HERR_BASE] : "unknown error";
    return strerror(err);
}

int64_t clock_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t clock_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *const level_names[] = {"trace", "debug", "info", "warn", "error"};

void log_event(enum log_level lvl, const char *fmt, ...)
{
    if (lvl < log_min_level)
        return;
    char line[2048];
    int64_t now = clock_wall_ms();
    time_t secs = (time_t)(now / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    /* syslog priorities: debug 7 (trace too), info 6, warning 4, err 3 */
    static const char pri[] = {'7', '7', '6', '4', '3'};
    int p = log_journal_prefix ? snprintf(line, sizeof line, "<%c>", pri[lvl]) : 0;
    int n = p + snprintf(line + p, sizeof line - (size_t)p,
                         "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03dZ level=%s ", tm.tm_year + 1900,
                         tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                         (int)(now % 1000), level_names[lvl]);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof line - 2)
        len = sizeof line - 2;
    line[len++] = '\n';
    /* One write per line keeps lines from different threads whole. */
    fwrite(line, 1, len, stderr);
}

const char *log_quote(char *out, size_t outlen, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    if (outlen == 0)
        return out;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char tmp[4];
        size_t k = 0;
        if (c == '"' || c == '\\') {
            tmp[k++] = '\\';
            tmp[k++] = (char)c;
        } else if (c < 0x20 || c == 0x7f) {
            tmp[k++] = '\\';
            tmp[k++] = 'x';
            tmp[k++] = hex[c >> 4];
            tmp[k++] = hex[c & 15];
        } else {
            tmp[k++] = (char)c;
        }
        if (o + k + 4 > outlen) {
            if (outlen >= 4) {
                size_t at = o < outlen - 4 ? o : outlen - 4;
                memcpy(out + at, "...", 3);
                o = at + 3;
            }
            break;
        }
        memcpy(out + o, tmp, k);
        o += k;
    }
    out[o < outlen ? o : outlen - 1] = '\0';
    return out;
}

static bool is_bare(const char *s, size_t n)
{
    if (n == 0) return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '=') return false;
    }
    return true;
}

const char *log_value(char *out, size_t outlen, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (is_bare(s, n) && n < outlen) {
        memcpy(out, s, n + 1);
        return out;
    }
    out[0] = '"';
    log_quote(out + 1, outlen - 2, s ? s : "", n);
    size_t len = 1 + strlen(out + 1);
    out[len] = '"';
    out[len + 1] = '\0';
    return out;
}

/* The one rule for files holding secrets (DKIM keys, AUTH passwords): a
 * file that group or others can read hands the secret to every local user
 * or service, so it is refused rather than used. Checked on the open fd,
 * not the path, so the file read is the file checked. */
int secret_file_open(const char *path, const char *what, char *why, size_t whylen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        int e = errno;
        snprintf(why, whylen, "cannot open %s %s: %s", what, path, strerror(e));
        return -e;
    }
    struct stat st;
    int rc = 0;
    if (fstat(fd, &st) != 0) {
        rc = -errno;
        snprintf(why, whylen, "cannot stat %s %s: %s", what, path, strerror(-rc));
    } else if (!S_ISREG(st.st_mode)) {
        rc = -HERR_CONFIG;
        snprintf(why, whylen, "%s %s is not a regular file", what, path);
    } else if (st.st_mode & 077) {
        rc = -HERR_CONFIG;
        snprintf(why, whylen, "%s %s is accessible to group or others (mode %04o); chmod 600 it",
                 what, path, (unsigned)(st.st_mode & 07777));
    }
    if (rc) {
        close(fd);
        return rc;
    }
    return fd;
}
