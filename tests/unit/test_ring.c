/* Timers fire in deadline order, re-arming moves them, cancelled ones never
 * fire, and deferred work runs after the batch. No sockets needed. A ring
 * whose submits keep failing stops the process (SIGABRT, logged) instead
 * of spinning forever for a free entry. */
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "herald/core.h"
#include "herald/ring.h"

struct tt {
    struct ring_timer t;
    int id;
};

static int fired[16];
static int n_fired;

static void on_fire(struct ring_timer *t)
{
    struct tt *x = (struct tt *)t;
    fired[n_fired++] = x->id;
}

static int deferred_runs;
static void on_deferred(struct ring_deferred *d)
{
    (void)d;
    deferred_runs++;
}

/* In a child: a ring of 4 entries whose fd is no longer an io_uring, then
 * more entries than fit. */
static void test_submit_failure(void)
{
    pid_t pid = fork();
    if (pid == 0) {
        struct ring r;
        if (ring_init(&r, 4) < 0) _exit(77);
        int devnull = open("/dev/null", O_RDWR);
        dup2(devnull, r.uring.ring_fd);
        for (int i = 0; i < 64; i++)
            io_uring_prep_nop(ring_sqe_noop_owner(&r));
        _exit(0); /* the old loop never got here, and never returned either */
    }
    int status = 0;
    pid_t got = 0;
    for (int i = 0; i < 100 && got == 0; i++) { /* 10 s at most */
        got = waitpid(pid, &status, WNOHANG);
        if (got == 0) usleep(100000);
    }
    if (got == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
    }
    CHECK(got == pid);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
}

int main(void)
{
    test_submit_failure();
    struct ring r;
    int rc = ring_init(&r, 64);
    if (rc < 0) {
        fprintf(stderr, "io_uring unavailable: %s\n", herald_strerror(rc));
        return 77;
    }
    struct tt t[6];
    for (int i = 0; i < 6; i++) {
        ring_timer_init(&t[i].t, on_fire);
        t[i].id = i;
    }
    int64_t now = r.now_ms;
    ring_timer_arm(&r, &t[0].t, now + 50);
    ring_timer_arm(&r, &t[1].t, now + 10);
    ring_timer_arm(&r, &t[2].t, now + 30);
    ring_timer_arm(&r, &t[3].t, now + 20);
    ring_timer_arm(&r, &t[4].t, now + 40);
    ring_timer_arm(&r, &t[5].t, now + 5);
    ring_timer_cancel(&r, &t[5].t);    /* never fires */
    ring_timer_arm(&r, &t[0].t, now + 1); /* moved earlier */
    CHECK(!ring_timer_armed(&t[5].t));
    CHECK(ring_timer_armed(&t[0].t));

    struct ring_deferred d = {0};
    ring_defer(&r, &d, on_deferred);
    ring_defer(&r, &d, on_deferred); /* queued once */

    int64_t start = clock_mono_ms();
    while (n_fired < 5 && clock_mono_ms() - start < 2000)
        ring_run_once(&r, 100);
    CHECK_EQ_INT(n_fired, 5);
    int want[] = {0, 1, 3, 2, 4};
    for (int i = 0; i < 5; i++)
        CHECK_EQ_INT(fired[i], want[i]);
    CHECK_EQ_INT(deferred_runs, 1);
    CHECK(clock_mono_ms() - start >= 35);
    ring_exit(&r);
    return check_report("test_ring");
}
