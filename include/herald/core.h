/* core: byte buffers, arenas, clocks, errors and logging shared by every module. */
#ifndef HERALD_CORE_H
#define HERALD_CORE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Project errors extend the negative-errno space (functions return 0 or -errno
 * or -HERR_*), so one convention covers syscalls, cqe->res and our own faults. */
enum herald_err {
    HERR_BASE = 4096,
    HERR_PROTOCOL,   /* peer broke the protocol */
    HERR_TOO_LONG,   /* input over a configured bound */
    HERR_MALFORMED,  /* unparseable input */
    HERR_TIMEOUT,    /* a stage deadline passed */
    HERR_CLOSED,     /* peer closed the connection */
    HERR_REDIS,      /* redis replied with an error */
    HERR_CONFIG,     /* configuration invalid */
    HERR_AGAIN,      /* incomplete input: feed more bytes */
    HERR_TLS,        /* TLS handshake or record layer failed */
    HERR_DNS,        /* name resolution failed */
    HERR_BAD_MAC,    /* a signed token's MAC does not verify */
    HERR_EXPIRED,    /* a signed token is older than its lifetime */
    HERR_FUTURE,     /* a signed token is dated ahead of the clock */
    HERR_COUNT
};

/* Like strerror for both errno values and HERR_*; takes the negative or
 * positive code. Never returns NULL. */
const char *herald_strerror(int err);

/* Growable byte buffer. data is always NUL-terminated when cap > 0, so text
 * content may be used as a C string; len excludes the terminator. */
struct hbuf {
    char *data;
    size_t len;
    size_t cap;
};

void hbuf_init(struct hbuf *b);
void hbuf_free(struct hbuf *b);
void hbuf_reset(struct hbuf *b); /* len = 0, keeps memory */
int hbuf_reserve(struct hbuf *b, size_t extra);
int hbuf_append(struct hbuf *b, const void *p, size_t n);
int hbuf_append_str(struct hbuf *b, const char *s);
int hbuf_append_char(struct hbuf *b, char c);
int hbuf_appendf(struct hbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int hbuf_vappendf(struct hbuf *b, const char *fmt, va_list ap);
/* Standard base64 (RFC 4648, padded, no line breaks) of p[0..n). */
int hbuf_append_base64(struct hbuf *b, const void *p, size_t n);
/* Drop the first n bytes (after a partial send). */
void hbuf_consume(struct hbuf *b, size_t n);

/* Bump allocator: many small strings freed together (a job's fields). */
struct arena_chunk;
struct arena {
    struct arena_chunk *head;
};
void arena_init(struct arena *a);
void *arena_alloc(struct arena *a, size_t n); /* NULL on OOM; 8-byte aligned */
char *arena_strndup(struct arena *a, const char *s, size_t n);
void arena_free(struct arena *a);
/* Forget every allocation but keep one small chunk for the next user (a
 * pooled job): pointers into the arena are invalid afterwards. */
void arena_reset(struct arena *a);

/* Clocks: monotonic for deadlines, wall for notes and headers. */
int64_t clock_mono_ms(void);
int64_t clock_wall_ms(void);

/* Logging: one line per event, key=value, to stderr.
 * log_event(LOG_INFO, "event=delivered job=%s host=%s", ...). The prefix
 * "ts=<rfc3339> level=<lvl> " is added. A value that came from outside
 * (a job id, an address, an SMTP reply, a Redis error, a DNS name) goes in
 * through LOG_VALUE, never as a raw %s: it could end the line or forge
 * fields. */
enum log_level { LOG_TRACE, LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };
extern enum log_level log_min_level;
/* Lines start with the journal's "<N>" priority (set when stderr is the
 * journal: service_stderr_is_journal). */
extern bool log_journal_prefix;
void log_event(enum log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Copy s into out (size outlen) as a log-safe value: control characters and
 * quotes escaped, truncated with "..." if needed. Returns out. */
const char *log_quote(char *out, size_t outlen, const char *s, size_t n);
/* s (may be NULL) as one key=value value: as it is when it is a non-empty
 * run of printable ASCII without '"', '\\' or '=', else in double quotes
 * with log_quote's escapes (so `job=a"b c=d` cannot forge a field, nor a CR
 * or LF start a line). Truncated to fit outlen (at least 8). Returns out. */
const char *log_value(char *out, size_t outlen, const char *s);
/* log_value into a temporary that lives to the end of the enclosing block:
 * log_event(LOG_INFO, "event=x job=%s reply=%s", LOG_VALUE(id), LOG_VALUE(r)). */
#define LOG_VALUE_MAX 320
#define LOG_VALUE(s)  log_value((char[LOG_VALUE_MAX]){0}, LOG_VALUE_MAX, (s))

/* Opens path read-only as a file holding a secret: it must be a regular
 * file that neither group nor others may access. Returns the fd (the caller
 * closes it), or -errno / -HERR_CONFIG with why saying "<what> <path> ...". */
/* A socket address's IP as text ("" and false when it is not IPv4 or
 * IPv6), and its port (0 likewise). src/core/sockaddr.c. */
struct sockaddr_storage;
bool sockaddr_ip(const struct sockaddr_storage *sa, char *out, size_t cap);
uint16_t sockaddr_port(const struct sockaddr_storage *sa);

int secret_file_open(const char *path, const char *what, char *why, size_t whylen);

#define HERALD_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
/* The object that embeds `ptr` as its `member` (ring ops, timers). */
#define HERALD_CONTAINER_OF(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

#endif
