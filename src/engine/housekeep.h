/* Worker 0 keeps Redis tidy for every process: notes older than
 * redis.events_max_age are trimmed from the events stream, and consumers
 * of the job group that have been idle for engine.forget_consumers with
 * nothing pending (processes that are gone) are removed. Idempotent, so
 * several processes doing it at once is harmless. */
#ifndef HERALD_ENGINE_HOUSEKEEP_H
#define HERALD_ENGINE_HOUSEKEEP_H

#include <stdint.h>

struct worker;
void housekeep_tick(struct worker *w, int64_t now_ms);

#endif
