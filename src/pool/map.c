#include "map.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define MAP_MIN_BUCKETS 64

uint64_t pool_map_hash(const char *key)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *key; key++)
        h = (h ^ (unsigned char)*key) * 1099511628211ull;
    return h;
}

int pool_map_init(struct pool_map *m)
{
    m->n = 0;
    m->nb = MAP_MIN_BUCKETS;
    m->b = calloc(m->nb, sizeof *m->b);
    return m->b ? 0 : -ENOMEM;
}

void pool_map_free(struct pool_map *m)
{
    free(m->b);
    m->b = NULL;
    m->nb = m->n = 0;
}

struct pool_map_node *pool_map_find(const struct pool_map *m, const char *key, uint64_t hash)
{
    if (!m->nb) return NULL;
    for (struct pool_map_node *n = m->b[hash & (m->nb - 1)]; n; n = n->next)
        if (n->hash == hash && strcmp(n->key, key) == 0) return n;
    return NULL;
}

static void grow(struct pool_map *m)
{
    size_t nb = m->nb * 2;
    struct pool_map_node **b = calloc(nb, sizeof *b);
    if (!b) return;
    for (size_t i = 0; i < m->nb; i++) {
        struct pool_map_node *n = m->b[i];
        while (n) {
            struct pool_map_node *next = n->next;
            size_t k = n->hash & (nb - 1);
            n->next = b[k];
            b[k] = n;
            n = next;
        }
    }
    free(m->b);
    m->b = b;
    m->nb = nb;
}

void pool_map_insert(struct pool_map *m, struct pool_map_node *n)
{
    if (m->n >= m->nb) grow(m);
    size_t k = n->hash & (m->nb - 1);
    n->next = m->b[k];
    m->b[k] = n;
    m->n++;
}

void pool_map_remove(struct pool_map *m, struct pool_map_node *n)
{
    for (struct pool_map_node **pp = &m->b[n->hash & (m->nb - 1)]; *pp; pp = &(*pp)->next)
        if (*pp == n) {
            *pp = n->next;
            m->n--;
            return;
        }
}
