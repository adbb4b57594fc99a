/* A string-keyed hash table of intrusive nodes that grows with what it
 * holds, so lookups stay O(1) from ten destinations to a hundred thousand
 * (the long tail of recipient domains). The node is embedded in its owner
 * (a destination, a group); the map neither allocates nor frees owners. */
#ifndef HERALD_POOL_MAP_H
#define HERALD_POOL_MAP_H

#include <stddef.h>
#include <stdint.h>

#include "herald/pool.h"

struct pool_map_node {
    struct pool_map_node *next; /* bucket chain */
    uint64_t hash;
    const char *key; /* owned by the node's owner */
};

uint64_t pool_map_hash(const char *key);
int pool_map_init(struct pool_map *m);
void pool_map_free(struct pool_map *m); /* the buckets only */
struct pool_map_node *pool_map_find(const struct pool_map *m, const char *key, uint64_t hash);
/* n->key and n->hash set by the caller; the key must not be present.
 * Grows the table (when it cannot, the chains just get longer). */
void pool_map_insert(struct pool_map *m, struct pool_map_node *n);
void pool_map_remove(struct pool_map *m, struct pool_map_node *n);
/* Every node, in no order; safe against removing the node visited. */
#define POOL_MAP_EACH(m, n, tmp)                                                                   \
    for (size_t pool_map_i_ = 0; pool_map_i_ < (m)->nb; pool_map_i_++)                            \
        for (struct pool_map_node *n = (m)->b[pool_map_i_], *tmp = n ? n->next : NULL; n;          \
             n = tmp, tmp = n ? n->next : NULL)

#endif
