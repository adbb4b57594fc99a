/* Client sessions per destination, so a pool of N connections to one host
 * costs one full handshake and N-1 resumptions. One cache per worker: no
 * locking. Small (hundreds of destinations), so a linear scan is fine and
 * keeps eviction (least recently used) trivial. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "herald/tls.h"

struct tls_cache_entry {
    char key[256];
    SSL_SESSION *sess;
    uint64_t used;
};

void tls_session_cache_init(struct tls_session_cache *c, size_t cap)
{
    memset(c, 0, sizeof *c);
    c->cap = cap ? cap : 1024;
}

static void drop(struct tls_session_cache *c, size_t i)
{
    SSL_SESSION_free(c->entries[i].sess);
    c->entries[i] = c->entries[--c->n];
}

static bool expired(SSL_SESSION *s)
{
    return (uint64_t)SSL_SESSION_get_time(s) + (uint64_t)SSL_SESSION_get_timeout(s) <=
           (uint64_t)time(NULL);
}

SSL_SESSION *tls_session_cache_get(struct tls_session_cache *c, const char *key)
{
    for (size_t i = 0; i < c->n; i++) {
        if (strcmp(c->entries[i].key, key) != 0) continue;
        if (expired(c->entries[i].sess)) {
            drop(c, i);
            return NULL;
        }
        c->entries[i].used = ++c->tick;
        return c->entries[i].sess;
    }
    return NULL;
}

void tls_session_cache_put(struct tls_session_cache *c, const char *key, SSL_SESSION *sess)
{
    if (!sess) return;
    if (strlen(key) >= sizeof c->entries[0].key) {
        SSL_SESSION_free(sess);
        return;
    }
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->entries[i].key, key) == 0) {
            SSL_SESSION_free(c->entries[i].sess);
            c->entries[i].sess = sess;
            c->entries[i].used = ++c->tick;
            return;
        }
    if (c->n == c->cap) {
        size_t lru = 0;
        for (size_t i = 1; i < c->n; i++)
            if (c->entries[i].used < c->entries[lru].used) lru = i;
        drop(c, lru);
    }
    if (!c->entries) {
        c->entries = calloc(c->cap, sizeof *c->entries);
        if (!c->entries) {
            SSL_SESSION_free(sess);
            return;
        }
    }
    struct tls_cache_entry *e = &c->entries[c->n++];
    snprintf(e->key, sizeof e->key, "%s", key);
    e->sess = sess;
    e->used = ++c->tick;
}

void tls_session_cache_free(struct tls_session_cache *c)
{
    for (size_t i = 0; i < c->n; i++) SSL_SESSION_free(c->entries[i].sess);
    free(c->entries);
    memset(c, 0, sizeof *c);
}
