/* ring: one io_uring per worker thread, completion dispatch, timers, and
 * deferred frees. Every socket operation of the engine goes through here. */
#ifndef HERALD_RING_H
#define HERALD_RING_H

#include <liburing.h>
#include <stdbool.h>
#include <stdint.h>

struct ring;
struct ring_op;

/* Completion handler: res is cqe->res (>= 0 or -errno). */
typedef void (*ring_op_fn)(struct ring_op *op, int res, uint32_t cqe_flags);

/* Embedded in the object that owns an operation; its address is the SQE's
 * user_data. The owner must keep it alive until the completion arrives,
 * which is why connections count operations in flight before freeing. */
struct ring_op {
    ring_op_fn fn;
};

struct ring_timer;
typedef void (*ring_timer_fn)(struct ring_timer *t);

/* A deadline in the ring's monotonic clock; kept in a binary heap. */
struct ring_timer {
    int64_t deadline_ms;
    ring_timer_fn fn;
    size_t heap_idx; /* SIZE_MAX when not armed */
};

/* Run once after the current batch of completions has been dispatched, so
 * an object can be freed without any handler of this batch still using it. */
struct ring_deferred;
typedef void (*ring_deferred_fn)(struct ring_deferred *d);
struct ring_deferred {
    ring_deferred_fn fn;
    struct ring_deferred *next;
    bool queued;
};

struct ring {
    struct io_uring uring;
    int64_t now_ms;              /* cached monotonic time, refreshed each iteration */
    struct ring_timer **heap;
    size_t n_timers;
    size_t heap_cap;
    struct ring_deferred *deferred;
    unsigned n_unsubmitted;
};

/* Set up a ring with `entries` SQEs. Returns 0 or -errno (-ENOSYS/-EPERM when
 * io_uring is unavailable or disabled on this kernel). */
int ring_init(struct ring *r, unsigned entries);
void ring_exit(struct ring *r);

/* An SQE for `op` (user_data set); flushes the SQ when full. Never NULL. */
struct io_uring_sqe *ring_sqe(struct ring *r, struct ring_op *op);
/* An SQE whose completion is ignored (cancels, fire-and-forget). */
struct io_uring_sqe *ring_sqe_noop_owner(struct ring *r);

/* Submit, wait up to max_wait_ms (less when a timer is due) for at least one
 * completion, dispatch all available completions, fire due timers, run
 * deferred work. Returns the number of completions handled or -errno. */
int ring_run_once(struct ring *r, int64_t max_wait_ms);

void ring_timer_init(struct ring_timer *t, ring_timer_fn fn);
/* (Re)arm at an absolute monotonic deadline. */
void ring_timer_arm(struct ring *r, struct ring_timer *t, int64_t deadline_ms);
void ring_timer_cancel(struct ring *r, struct ring_timer *t);
static inline bool ring_timer_armed(const struct ring_timer *t)
{
    return t->heap_idx != (size_t)-1;
}

void ring_defer(struct ring *r, struct ring_deferred *d, ring_deferred_fn fn);

/* Submit a SEND of data[0..len) for op: at most RING_SEND_CHUNK bytes of it
 * per SEND; ring_send_continue sends the rest. */
#define RING_SEND_CHUNK (64 * 1024)
void ring_send(struct ring *r, struct ring_op *op, int fd, const char *data, size_t len);
/* Account a successful SEND completion of `res` bytes against *sent; when
 * bytes of data[0..len) remain, resubmit them and return true. */
bool ring_send_continue(struct ring *r, struct ring_op *op, int fd, const char *data, size_t len,
                        size_t *sent, int res);

/* The kernel filled n bytes at p through the ring. Memcheck cannot see
 * io_uring writes, so tell it; a no-op outside valgrind. */
void ring_mark_filled(const void *p, size_t n);

/* Cancel every operation in flight on fd; their completions arrive with
 * -ECANCELED (or their natural result if they already finished). */
void ring_cancel_fd(struct ring *r, int fd);
/* Cancel the one operation in flight for op. Use this when the fd may be
 * closed (and its number reused) before the cancel is submitted: a cancel
 * by fd is resolved when the kernel runs it, not when it was asked for. */
void ring_cancel_op(struct ring *r, struct ring_op *op);

#endif
