/* Internal to the engine: worker 0's status publisher (see status.c). */
#ifndef HERALD_ENGINE_STATUS_H
#define HERALD_ENGINE_STATUS_H

#include <stdint.h>

struct worker;

/* Worker 0 only (others: no-op). 0 or -ENOMEM. */
int status_init(struct worker *w);
void status_free(struct worker *w);
/* From the worker's tick: publishes at most once a second. */
void status_tick(struct worker *w, int64_t now_ms);
/* The notes connection is up: restore persisted reputation (once). */
void status_on_connected(struct worker *w);

#endif
