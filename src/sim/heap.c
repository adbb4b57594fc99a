/* The simulator's two heaps (simint.h): events by time, and the retry set
 * by due time. Grown by doubling; nothing per job. */
#include <errno.h>
#include <stdlib.h>

#include "sim/simint.h"

static bool ev_less(const struct ev *a, const struct ev *b)
{
    return a->at < b->at || (a->at == b->at && a->seq < b->seq);
}

int sim_ev_push(struct sim *s, int64_t at, uint32_t kind, uint32_t idx)
{
    if (s->n_ev == s->cap_ev) {
        size_t cap = s->cap_ev ? s->cap_ev * 2 : 1024;
        struct ev *e = realloc(s->ev, cap * sizeof *e);
        if (!e) return -ENOMEM;
        s->ev = e;
        s->cap_ev = cap;
    }
    struct ev x = {at < s->now ? s->now : at, s->seq++, kind, idx};
    size_t i = s->n_ev++;
    while (i > 0 && ev_less(&x, &s->ev[(i - 1) / 2])) {
        s->ev[i] = s->ev[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    s->ev[i] = x;
    return 0;
}

struct ev sim_ev_pop(struct sim *s)
{
    struct ev top = s->ev[0], last = s->ev[--s->n_ev];
    size_t i = 0, n = s->n_ev;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && ev_less(&s->ev[c + 1], &s->ev[c])) c++;
        if (!ev_less(&s->ev[c], &last)) break;
        s->ev[i] = s->ev[c];
        i = c;
    }
    if (n) s->ev[i] = last;
    return top;
}

static bool rs_less(const struct rent *a, const struct rent *b)
{
    return a->due_ms < b->due_ms || (a->due_ms == b->due_ms && a->job < b->job);
}

void sim_rs_down(struct rent *h, size_t n, size_t i)
{
    struct rent x = h[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && rs_less(&h[c + 1], &h[c])) c++;
        if (!rs_less(&h[c], &x)) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = x;
}

int sim_rs_push(struct sim *s, uint32_t job, int64_t due)
{
    if (s->n_rs == s->cap_rs) {
        size_t cap = s->cap_rs ? s->cap_rs * 2 : 1024;
        struct rent *h = realloc(s->rs, cap * sizeof *h);
        if (!h) return -ENOMEM;
        s->rs = h;
        s->cap_rs = cap;
    }
    struct rent x = {due, job};
    size_t i = s->n_rs++;
    while (i > 0 && rs_less(&x, &s->rs[(i - 1) / 2])) {
        s->rs[i] = s->rs[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    s->rs[i] = x;
    return 0;
}
