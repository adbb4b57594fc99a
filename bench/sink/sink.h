/* herald-sink: what main (options, threads, stats) and the ring workers share. */
#ifndef HERALD_SINK_H
#define HERALD_SINK_H

#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "herald/tls.h"
#include "herald/smtpd.h"

#define SINK_LISTEN_MAX  16
#define SINK_THREADS_MAX 64
#define SINK_IPS_MAX     1024 /* distinct client IPs tracked; the rest count as "other" */

/* Per client IP. messages is bumped by workers without the lock; open and
 * max_open change only under sink_stats.ip_lock (on connect/close, which are
 * rare next to messages because clients pool connections). */
struct sink_ip {
    char ip[INET6_ADDRSTRLEN];
    _Atomic uint64_t messages;
    int64_t open;
    int64_t max_open;
};

struct sink_stats {
    _Atomic uint64_t messages;
    _Atomic uint64_t tempfail;
    _Atomic uint64_t permfail;
    _Atomic uint64_t dropped;
    _Atomic uint64_t bytes;
    _Atomic uint64_t tls_connections; /* handshakes completed */
    _Atomic uint64_t tls_failed;      /* connections a TLS error ended */
    _Atomic uint64_t n_saved;         /* names --save-dir files */
    pthread_mutex_t ip_lock;          /* guards everything below */
    uint64_t connections;
    int64_t open;
    int64_t max_concurrent;
    struct sink_ip ips[SINK_IPS_MAX];
    size_t n_ips;
};

struct sink {
    struct smtpd_policy policy;
    struct smtpd_limiter limiter;
    unsigned n_threads;
    unsigned latency_ms;
    uint64_t seed;
    const char *stats_path;
    const char *save_dir;
    int record_fd;    /* -1 when --record is off; O_APPEND, written a batch at a time */
    SSL_CTX *tls_ctx; /* --tls-cert/--tls-key, one for all threads; NULL: no STARTTLS */
    /* listen_fds[t][l]: thread t's socket for --listen l (SO_REUSEPORT). */
    int listen_fds[SINK_THREADS_MAX][SINK_LISTEN_MAX];
    unsigned n_listen;
    atomic_bool stop;
    struct sink_stats stats;

    pthread_mutex_t ready_lock; /* workers report ring set-up to main */
    pthread_cond_t ready_cond;
    unsigned n_ready;
    int ready_err;
};

struct sink_worker_arg {
    struct sink *sink;
    unsigned index;
};

/* Thread body of one worker: builds its own ring, accepts on its listening
 * sockets and serves connections until sink->stop. Reports its set-up
 * result through sink->ready_*, then returns NULL. */
void *sink_worker_main(void *arg);

/* Account a connection opening/closing for client ip; returns the IP's entry
 * (stable for the life of the process). */
struct sink_ip *sink_stats_open(struct sink_stats *st, const char *ip);
void sink_stats_close(struct sink_stats *st, struct sink_ip *ip);

#endif
