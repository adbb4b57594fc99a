/* io_uring loop: one per worker thread. Completions carry a pointer to the
 * embedded struct ring_op of their owner; a NULL user_data marks operations
 * whose result nobody needs (cancels). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#define HAVE_MEMCHECK 1
#endif

#include "herald/core.h"
#include "herald/ring.h"

int ring_init(struct ring *r, unsigned entries)
{
    memset(r, 0, sizeof *r);
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    /* One thread submits and reaps: let the kernel skip cross-thread work. */
    p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN;
    int rc = io_uring_queue_init_params(entries, &r->uring, &p);
    if (rc == -EINVAL) {
        memset(&p, 0, sizeof p);
        rc = io_uring_queue_init_params(entries, &r->uring, &p);
    }
    if (rc < 0)
        return rc;
    r->now_ms = clock_mono_ms();
    return 0;
}

void ring_exit(struct ring *r)
{
    io_uring_queue_exit(&r->uring);
    free(r->heap);
    r->heap = NULL;
    r->n_timers = r->heap_cap = 0;
}

/* The SQ is full: submit to make room. A submit the kernel refuses for a
 * moment (EINTR, EAGAIN, EBUSY while completions back up) is tried again
 * for about a second; one that keeps failing means the ring is unusable
 * (its fd gone, the kernel out of memory), and the callers cannot work
 * without an entry, so the process stops loudly instead of spinning at
 * 100% CPU forever. Its jobs stay pending in Redis for another process. */
static struct io_uring_sqe *get_sqe(struct ring *r)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&r->uring);
    for (int tries = 0; !sqe; tries++) {
        int rc = io_uring_submit(&r->uring);
        if (rc >= 0) {
            r->n_unsubmitted = 0;
        } else if (tries >= 1000 || (rc != -EINTR && rc != -EAGAIN && rc != -EBUSY)) {
            log_event(LOG_ERROR, "event=ring_submit_failed reason=\"%s\" tries=%d action=abort",
                      herald_strerror(rc), tries + 1);
            abort();
        } else {
            struct timespec ms = {0, 1000000};
            nanosleep(&ms, NULL);
        }
        sqe = io_uring_get_sqe(&r->uring);
    }
    r->n_unsubmitted++;
    return sqe;
}

struct io_uring_sqe *ring_sqe(struct ring *r, struct ring_op *op)
{
    struct io_uring_sqe *sqe = get_sqe(r);
    io_uring_sqe_set_data(sqe, op);
    return sqe;
}

struct io_uring_sqe *ring_sqe_noop_owner(struct ring *r)
{
    struct io_uring_sqe *sqe = get_sqe(r);
    io_uring_sqe_set_data(sqe, NULL);
    return sqe;
}

void ring_cancel_fd(struct ring *r, int fd)
{
    struct io_uring_sqe *sqe = ring_sqe_noop_owner(r);
    io_uring_prep_cancel_fd(sqe, fd, IORING_ASYNC_CANCEL_ALL);
}

void ring_cancel_op(struct ring *r, struct ring_op *op)
{
    struct io_uring_sqe *sqe = ring_sqe_noop_owner(r);
    io_uring_prep_cancel(sqe, op, 0);
}

/* --- timers: binary min-heap on deadline --- */

static void heap_swap(struct ring *r, size_t a, size_t b)
{
    struct ring_timer *t = r->heap[a];
    r->heap[a] = r->heap[b];
    r->heap[b] = t;
    r->heap[a]->heap_idx = a;
    r->heap[b]->heap_idx = b;
}

static void heap_up(struct ring *r, size_t i)
{
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (r->heap[parent]->deadline_ms <= r->heap[i]->deadline_ms)
            break;
        heap_swap(r, i, parent);
        i = parent;
    }
}

static void heap_down(struct ring *r, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, rr = l + 1, m = i;
        if (l < r->n_timers && r->heap[l]->deadline_ms < r->heap[m]->deadline_ms)
            m = l;
        if (rr < r->n_timers && r->heap[rr]->deadline_ms < r->heap[m]->deadline_ms)
            m = rr;
        if (m == i)
            return;
        heap_swap(r, i, m);
        i = m;
    }
}

void ring_timer_init(struct ring_timer *t, ring_timer_fn fn)
{
    t->deadline_ms = 0;
    t->fn = fn;
    t->heap_idx = (size_t)-1;
}

void ring_timer_cancel(struct ring *r, struct ring_timer *t)
{
    size_t i = t->heap_idx;
    if (i == (size_t)-1)
        return;
    t->heap_idx = (size_t)-1;
    r->n_timers--;
    if (i == r->n_timers)
        return;
    r->heap[i] = r->heap[r->n_timers];
    r->heap[i]->heap_idx = i;
    heap_up(r, i);
    heap_down(r, r->heap[i]->heap_idx);
}

void ring_timer_arm(struct ring *r, struct ring_timer *t, int64_t deadline_ms)
{
    if (t->heap_idx != (size_t)-1) {
        int64_t old = t->deadline_ms;
        t->deadline_ms = deadline_ms;
        if (deadline_ms < old)
            heap_up(r, t->heap_idx);
        else
            heap_down(r, t->heap_idx);
        return;
    }
    if (r->n_timers == r->heap_cap) {
        size_t cap = r->heap_cap ? r->heap_cap * 2 : 64;
        struct ring_timer **h = realloc(r->heap, cap * sizeof *h);
        if (!h)
            abort(); /* timers guard every stage; running without one would hang */
        r->heap = h;
        r->heap_cap = cap;
    }
    t->deadline_ms = deadline_ms;
    t->heap_idx = r->n_timers;
    r->heap[r->n_timers++] = t;
    heap_up(r, t->heap_idx);
}

static void fire_timers(struct ring *r)
{
    /* Bounded per iteration so a timer that re-arms itself in the past
     * cannot spin this loop forever. */
    size_t budget = r->n_timers + 16;
    while (r->n_timers > 0 && budget-- > 0) {
        struct ring_timer *t = r->heap[0];
        if (t->deadline_ms > r->now_ms)
            break;
        ring_timer_cancel(r, t);
        t->fn(t);
    }
}

void ring_defer(struct ring *r, struct ring_deferred *d, ring_deferred_fn fn)
{
    if (d->queued)
        return;
    d->fn = fn;
    d->queued = true;
    d->next = r->deferred;
    r->deferred = d;
}

static void run_deferred(struct ring *r)
{
    while (r->deferred) {
        struct ring_deferred *list = r->deferred;
        r->deferred = NULL;
        while (list) {
            struct ring_deferred *next = list->next;
            list->queued = false;
            list->fn(list);
            list = next;
        }
    }
}

int ring_run_once(struct ring *r, int64_t max_wait_ms)
{
    r->now_ms = clock_mono_ms();
    int64_t wait_ms = max_wait_ms;
    if (r->n_timers > 0) {
        int64_t until = r->heap[0]->deadline_ms - r->now_ms;
        if (until < wait_ms)
            wait_ms = until < 0 ? 0 : until;
    }
    if (r->deferred)
        wait_ms = 0;

    struct io_uring_cqe *cqe = NULL;
    int rc;
    if (wait_ms > 0) {
        struct __kernel_timespec ts = {.tv_sec = wait_ms / 1000,
                                       .tv_nsec = (wait_ms % 1000) * 1000000};
        rc = io_uring_submit_and_wait_timeout(&r->uring, &cqe, 1, &ts, NULL);
    } else {
        rc = io_uring_submit(&r->uring);
    }
    r->n_unsubmitted = 0;
    if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY)
        return rc;

    r->now_ms = clock_mono_ms();
    int handled = 0;
    unsigned head;
    unsigned seen = 0;
    io_uring_for_each_cqe(&r->uring, head, cqe)
    {
        struct ring_op *op = io_uring_cqe_get_data(cqe);
        int res = cqe->res;
        uint32_t flags = cqe->flags;
        seen++;
        if (op)
            op->fn(op, res, flags);
        handled++;
    }
    io_uring_cq_advance(&r->uring, seen);
    fire_timers(r);
    run_deferred(r);
    return handled;
}

void ring_mark_filled(const void *p, size_t n)
{
#ifdef HAVE_MEMCHECK
    VALGRIND_MAKE_MEM_DEFINED(p, n);
#else
    (void)p;
    (void)n;
#endif
}

void ring_send(struct ring *r, struct ring_op *op, int fd, const char *data, size_t len)
{
    struct io_uring_sqe *sqe = ring_sqe(r, op);
    /* One SEND completes only once all its bytes are in the socket: in
     * chunks, a peer that reads slowly shows progress (data_block counts
     * time without it), and one that stops reading is found. */
    io_uring_prep_send(sqe, fd, data, len > RING_SEND_CHUNK ? RING_SEND_CHUNK : len, MSG_NOSIGNAL);
}

bool ring_send_continue(struct ring *r, struct ring_op *op, int fd, const char *data, size_t len,
                        size_t *sent, int res)
{
    *sent += (size_t)res;
    if (*sent >= len)
        return false;
    ring_send(r, op, fd, data + *sent, len - *sent);
    return true;
}
