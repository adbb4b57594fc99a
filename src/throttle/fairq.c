/* Start-time fair queuing (Goyal et al.): an item's start tag is the later
 * of the virtual time and its class's previous finish tag; its finish tag
 * is start + 1/weight. Serving by smallest start tag interleaves the
 * classes by weight; a class that was idle starts at the current virtual
 * time, so it neither waits behind others' backlog nor gets credit for the
 * time it was idle. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "herald/fairq.h"

void fairq_init(struct fairq *q)
{
    memset(q, 0, sizeof *q);
}

void fairq_free(struct fairq *q)
{
    free(q->heap);
    for (struct fairq_class *c = q->classes, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    memset(q, 0, sizeof *q);
}

void fairq_node_init(struct fairq_node *n)
{
    memset(n, 0, sizeof *n);
    n->heap_idx = SIZE_MAX;
}

static struct fairq_class *find(const struct fairq *q, const char *key)
{
    for (struct fairq_class *c = q->classes; c; c = c->next)
        if (strcmp(c->key, key) == 0)
            return c;
    return NULL;
}

static bool before(const struct fairq_node *a, const struct fairq_node *b)
{
    return a->tag < b->tag || (a->tag == b->tag && a->seq < b->seq);
}

static void place(struct fairq *q, size_t i, struct fairq_node *n)
{
    q->heap[i] = n;
    n->heap_idx = i;
}

static void sift_up(struct fairq *q, size_t i)
{
    struct fairq_node *n = q->heap[i];
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!before(n, q->heap[p]))
            break;
        place(q, i, q->heap[p]);
        i = p;
    }
    place(q, i, n);
}

static void sift_down(struct fairq *q, size_t i)
{
    struct fairq_node *n = q->heap[i];
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        struct fairq_node *best = n;
        if (l < q->n && before(q->heap[l], best)) {
            m = l;
            best = q->heap[l];
        }
        if (r < q->n && before(q->heap[r], best)) {
            m = r;
            best = q->heap[r];
        }
        if (m == i)
            break;
        place(q, i, best);
        i = m;
    }
    place(q, i, n);
}

int fairq_push(struct fairq *q, struct fairq_node *n, const char *key, double weight)
{
    if (weight <= 0)
        weight = 1;
    struct fairq_class *c = find(q, key);
    if (!c) {
        c = calloc(1, sizeof *c);
        if (!c)
            return -ENOMEM;
        strncpy(c->key, key, sizeof c->key - 1);
        c->next = q->classes;
        q->classes = c;
    }
    if (q->n == q->cap) {
        size_t cap = q->cap ? q->cap * 2 : 64;
        struct fairq_node **h = realloc(q->heap, cap * sizeof *h);
        if (!h)
            return -ENOMEM;
        q->heap = h;
        q->cap = cap;
    }
    if (c->n == 0)
        q->active_weight += weight;
    else
        q->active_weight += weight - c->weight;
    c->weight = weight;
    double start = c->last_finish > q->vtime ? c->last_finish : q->vtime;
    c->last_finish = start + 1.0 / weight;
    c->n++;
    n->tag = start;
    n->seq = q->seq++;
    n->cls = c;
    place(q, q->n++, n);
    sift_up(q, q->n - 1);
    return 0;
}

static void detach(struct fairq *q, struct fairq_node *n)
{
    struct fairq_class *c = n->cls;
    if (c && c->n > 0 && --c->n == 0) {
        q->active_weight -= c->weight;
        if (q->active_weight < 1e-9)
            q->active_weight = 0;
    }
    n->heap_idx = SIZE_MAX;
    n->cls = NULL;
}

struct fairq_node *fairq_pop(struct fairq *q)
{
    if (q->n == 0)
        return NULL;
    struct fairq_node *top = q->heap[0];
    q->n--;
    if (q->n > 0) {
        place(q, 0, q->heap[q->n]);
        sift_down(q, 0);
    }
    if (top->tag > q->vtime)
        q->vtime = top->tag;
    detach(q, top);
    return top;
}

void fairq_remove(struct fairq *q, struct fairq_node *n)
{
    size_t i = n->heap_idx;
    if (i == SIZE_MAX || i >= q->n || q->heap[i] != n)
        return;
    q->n--;
    if (i < q->n) {
        struct fairq_node *moved = q->heap[q->n];
        place(q, i, moved);
        sift_down(q, i);
        sift_up(q, moved->heap_idx);
    }
    detach(q, n);
}

struct fairq_class *fairq_class_get(struct fairq *q, const char *key)
{
    return (struct fairq_class *)find(q, key);
}

size_t fairq_class_len(const struct fairq *q, const char *key)
{
    const struct fairq_class *c = find(q, key);
    return c ? c->n : 0;
}

double fairq_share(const struct fairq *q, const char *key, double weight)
{
    if (weight <= 0)
        weight = 1;
    const struct fairq_class *c = find(q, key);
    double total = q->active_weight;
    if (!c || c->n == 0)
        total += weight;
    else
        total += weight - c->weight;
    return total > 0 ? weight / total : 1.0;
}
