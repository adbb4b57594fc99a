/* The weighted fair queue behind throttled sending: a newly active class is
 * served at once, weights split the slots, nobody starves, removal keeps
 * the heap sound. */
#include <stdio.h>
#include <stddef.h>
#include <string.h>

#include "check.h"
#include "herald/fairq.h"

struct item {
    struct fairq_node node;
    char cls;
    int n;
};

#define ITEM_OF(p) ((struct item *)((char *)(p) - offsetof(struct item, node)))

static void test_late_class_goes_first(void)
{
    /* Tenant A has 1000 queued; tenant B's 10 arrive later: all 10 are
     * served within the next 20 pops, and A is not starved meanwhile. */
    static struct item a[1000], b[10];
    struct fairq q;
    fairq_init(&q);
    for (int i = 0; i < 1000; i++) {
        fairq_node_init(&a[i].node);
        a[i].cls = 'A';
        a[i].n = i;
        CHECK_EQ_INT(fairq_push(&q, &a[i].node, "A", 1), 0);
    }
    for (int i = 0; i < 5; i++) /* A has been sending for a while */
        CHECK(ITEM_OF(fairq_pop(&q))->cls == 'A');
    for (int i = 0; i < 10; i++) {
        fairq_node_init(&b[i].node);
        b[i].cls = 'B';
        b[i].n = i;
        CHECK_EQ_INT(fairq_push(&q, &b[i].node, "B", 1), 0);
    }
    CHECK_EQ_INT(fairq_class_len(&q, "B"), 10);
    int seen_b = 0, seen_a = 0, last_b = -1, last_a = 4;
    for (int i = 0; i < 20; i++) {
        struct item *it = ITEM_OF(fairq_pop(&q));
        if (it->cls == 'B') {
            CHECK(it->n == last_b + 1); /* FIFO within a class */
            last_b = it->n;
            seen_b++;
        } else {
            CHECK(it->n == last_a + 1);
            last_a = it->n;
            seen_a++;
        }
    }
    CHECK_EQ_INT(seen_b, 10);
    CHECK_EQ_INT(seen_a, 10);
    CHECK_EQ_INT(fairq_class_len(&q, "B"), 0);
    CHECK_EQ_INT(fairq_len(&q), 1000 - 5 - 10);
    fairq_free(&q);
}

static void test_weights(void)
{
    /* High (weight 4) against bulk (weight 1), both backlogged: 4:1. */
    static struct item h[400], l[400];
    struct fairq q;
    fairq_init(&q);
    for (int i = 0; i < 400; i++) {
        fairq_node_init(&l[i].node);
        l[i].cls = 'L';
        fairq_push(&q, &l[i].node, "acme/bulk", 1);
    }
    for (int i = 0; i < 400; i++) {
        fairq_node_init(&h[i].node);
        h[i].cls = 'H';
        fairq_push(&q, &h[i].node, "acme/high", 4);
    }
    CHECK(fairq_share(&q, "acme/high", 4) > 0.79 && fairq_share(&q, "acme/high", 4) < 0.81);
    CHECK(fairq_share(&q, "beta/normal", 2) > 0.28 && fairq_share(&q, "beta/normal", 2) < 0.29);
    int nh = 0;
    for (int i = 0; i < 100; i++)
        if (ITEM_OF(fairq_pop(&q))->cls == 'H')
            nh++;
    CHECK(nh >= 78 && nh <= 82);
    /* bulk is never starved: it got about a fifth */
    CHECK(100 - nh >= 18);
    fairq_free(&q);
}

static void test_remove_and_empty(void)
{
    static struct item it[50];
    struct fairq q;
    fairq_init(&q);
    CHECK(fairq_pop(&q) == NULL);
    for (int i = 0; i < 50; i++) {
        fairq_node_init(&it[i].node);
        it[i].n = i;
        fairq_push(&q, &it[i].node, i % 2 ? "odd" : "even", 1 + i % 3);
    }
    for (int i = 0; i < 50; i += 3)
        fairq_remove(&q, &it[i].node);
    fairq_remove(&q, &it[0].node); /* twice: no effect */
    size_t left = 0;
    double last = -1;
    struct fairq_node *n;
    while ((n = fairq_pop(&q)) != NULL) {
        CHECK(ITEM_OF(n)->n % 3 != 0);
        CHECK(n->tag >= last); /* served in tag order */
        last = n->tag;
        left++;
    }
    CHECK_EQ_INT(left, 50 - 17);
    CHECK(q.active_weight == 0);
    CHECK_EQ_INT(fairq_class_len(&q, "odd"), 0);
    fairq_free(&q);
}

int main(void)
{
    test_late_class_goes_first();
    test_weights();
    test_remove_and_empty();
    return check_report("test_fairq");
}
