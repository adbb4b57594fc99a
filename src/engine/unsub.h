/* Internal to the engine: the one-click unsubscribe endpoint (RFC 8058,
 * `unsubscribe.listen`; see unsub.c). */
#ifndef HERALD_ENGINE_UNSUB_H
#define HERALD_ENGINE_UNSUB_H

#include <stddef.h>

#include "herald/feedback.h"

struct engine_shared;
struct unsub_server;

/* Binds listen_on and serves from a thread of its own, verifying tokens
 * with keys (copied) and writing through its own Redis connection to
 * sh->redis (plain redis:// only). 0, or a negative code with err filled. */
int unsub_start(struct engine_shared *sh, const char *listen_on, const struct fb_keys *keys,
                struct unsub_server **out, char *err, size_t errlen);
/* Wakes the thread, waits for it and frees everything; NULL is a no-op. */
void unsub_stop(struct unsub_server *u);

#endif
