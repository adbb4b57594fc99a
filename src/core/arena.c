/* Chunked bump allocator: a job's strings are allocated here and released in
 * one call when the job ends, so there is no per-field free to forget. */
#include <stdlib.h>
#include <string.h>

#include "herald/core.h"

struct arena_chunk {
    struct arena_chunk *next;
    size_t used;
    size_t cap;
    _Alignas(8) char mem[];
};

#define ARENA_CHUNK_MIN 4096

void arena_init(struct arena *a)
{
    a->head = NULL;
}

void *arena_alloc(struct arena *a, size_t n)
{
    n = (n + 7) & ~(size_t)7;
    struct arena_chunk *c = a->head;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > ARENA_CHUNK_MIN ? n : ARENA_CHUNK_MIN;
        c = malloc(sizeof(*c) + cap);
        if (!c)
            return NULL;
        c->used = 0;
        c->cap = cap;
        c->next = a->head;
        a->head = c;
    }
    void *p = c->mem + c->used;
    c->used += n;
    return p;
}

char *arena_strndup(struct arena *a, const char *s, size_t n)
{
    char *p = arena_alloc(a, n + 1);
    if (!p)
        return NULL;
    if (n)
        memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

/* A chunk this small is kept by arena_reset: one job's fields fit in it,
 * and a pooled delivery reusing it needs no malloc; bigger ones (a large
 * raw message) go back to the allocator. */
#define ARENA_KEEP_MAX (64 * 1024)

void arena_reset(struct arena *a)
{
    struct arena_chunk *c = a->head, *keep = NULL;
    while (c) {
        struct arena_chunk *next = c->next;
        if (!keep && c->cap <= ARENA_KEEP_MAX)
            keep = c;
        else
            free(c);
        c = next;
    }
    if (keep) {
        keep->used = 0;
        keep->next = NULL;
    }
    a->head = keep;
}

void arena_free(struct arena *a)
{
    struct arena_chunk *c = a->head;
    while (c) {
        struct arena_chunk *next = c->next;
        free(c);
        c = next;
    }
    a->head = NULL;
}
