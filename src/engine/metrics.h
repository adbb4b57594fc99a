/* Internal to the engine: the Prometheus text endpoint (see metrics.c). */
#ifndef HERALD_ENGINE_METRICS_H
#define HERALD_ENGINE_METRICS_H

#include <stddef.h>

#include "herald/config.h"
#include "herald/core.h"

struct engine_shared;
struct metrics_server;

/* The token buffer; the token itself may be up to METRICS_TOKEN_MAX - 2
 * bytes (a line filling the buffer may have been cut short). */
#define METRICS_TOKEN_MAX 512

/* The token metrics.token_file names, into out[METRICS_TOKEN_MAX]; "" when
 * no file is set or there is no endpoint. 0, or a negative code with err filled: the file cannot
 * be read, or its first line is empty, too long, or holds a byte a bearer
 * token cannot (space, control, non-ASCII). Called before the workers
 * start, so a bad file stops herald before it takes any job. */
int metrics_token_load(const struct cfg_metrics *mc, char *out, char *err, size_t errlen);
/* Bind listen_on ("IP:PORT" / "[IPv6]:PORT") and serve from a thread of its
 * own; with a non-empty token (copied), requests without
 * "Authorization: Bearer <token>" get 401. 0, or a negative code with err
 * filled. */
int metrics_start(struct engine_shared *sh, const char *listen_on, const char *token,
                  struct metrics_server **out, char *err, size_t errlen);
void metrics_stop(struct metrics_server *m);
/* The exposition text (for the endpoint and tests). 0 or -ENOMEM. */
int metrics_render(struct engine_shared *sh, struct hbuf *out);

#endif
