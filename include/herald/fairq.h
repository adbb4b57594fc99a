/* fairq: a weighted fair queue (start-time fair queuing). Items of several
 * classes (tenant x priority) wait for one resource (an egress IP x
 * provider's send slots); each pop returns the item with the smallest
 * start tag, so every class with waiting items gets slots in proportion to
 * its weight, a newly active class is served at once instead of behind the
 * backlog of a busy one, and no class with a weight is ever starved.
 * Nodes are embedded in the caller's objects; no allocation per item
 * except the heap array and one record per class. Single-threaded. */
#ifndef HERALD_FAIRQ_H
#define HERALD_FAIRQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct fairq_class {
    char key[96];
    double weight;
    double last_finish; /* finish tag of the class's last queued item */
    size_t n;           /* items queued */
    struct fairq_class *next;
};

struct fairq_node {
    double tag;        /* start tag: served in increasing order */
    unsigned long seq; /* ties: first in, first out */
    size_t heap_idx;   /* SIZE_MAX when not queued */
    struct fairq_class *cls;
};

struct fairq {
    struct fairq_node **heap;
    size_t n, cap;
    double vtime; /* start tag of the item served last */
    unsigned long seq;
    struct fairq_class *classes;
    double active_weight; /* sum of the weights of classes with items */
};

void fairq_init(struct fairq *q);
void fairq_free(struct fairq *q);
void fairq_node_init(struct fairq_node *n);
/* Queue n in class `key` with `weight` (> 0; a class's weight follows the
 * latest push). 0 or -ENOMEM. */
int fairq_push(struct fairq *q, struct fairq_node *n, const char *key, double weight);
/* The next item by start tag, or NULL when empty. */
struct fairq_node *fairq_pop(struct fairq *q);
/* Take a queued node out (its owner is going away). */
void fairq_remove(struct fairq *q, struct fairq_node *n);
/* Items queued in class `key` (0 for an unknown class). */
size_t fairq_class_len(const struct fairq *q, const char *key);
/* The share of the resource class `key` with `weight` gets while the
 * classes now waiting keep waiting: weight / (active weights + its own if
 * it is idle). In (0, 1]. */
double fairq_share(const struct fairq *q, const char *key, double weight);
/* The class record of `key`, or NULL when it never had an item. */
struct fairq_class *fairq_class_get(struct fairq *q, const char *key);
static inline size_t fairq_len(const struct fairq *q)
{
    return q->n;
}

#endif
