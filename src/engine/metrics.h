/* Internal to the engine: the Prometheus text endpoint (see metrics.c). */
#ifndef HERALD_ENGINE_METRICS_H
#define HERALD_ENGINE_METRICS_H

#include <stddef.h>

#include "herald/core.h"

struct engine_shared;
struct metrics_server;

/* Bind listen_on ("IP:PORT" / "[IPv6]:PORT") and serve from a thread of its
 * own. 0, or a negative code with err filled. */
int metrics_start(struct engine_shared *sh, const char *listen_on, struct metrics_server **out,
                  char *err, size_t errlen);
void metrics_stop(struct metrics_server *m);
/* The exposition text (for the endpoint and tests). 0 or -ENOMEM. */
int metrics_render(struct engine_shared *sh, struct hbuf *out);

#endif
