/* Internal to the engine: the gate between a chosen path (egress IP x
 * provider) and the pool. Warm-up caps, suspensions and the provider's
 * rate decide whether a message goes now, waits in memory for its slot
 * (weighted fair share by tenant x priority), or goes back to the retry
 * set; the message is built (MIME + DKIM) only when it goes. */
#ifndef HERALD_ENGINE_GATE_H
#define HERALD_ENGINE_GATE_H

#include <stdbool.h>
#include <stdint.h>

#include "herald/config.h"

struct delivery;
struct worker;

/* d carries its path (route_submit filled pair, target, lim, ip, ehlo). */
void gate_submit(struct delivery *d, const struct cfg_provider *prov);
/* Take d off its hold queue (it leaves while QUEUED). */
void gate_dequeue(struct delivery *d);
/* Whether an egress IP has reached today's warm-up cap (false while its
 * shared count is not heard yet: the gate holds those messages a second). */
bool gate_warmup_full(struct worker *w, const char *ip, int64_t wall_ms);
/* After a reload: every queue takes its next slots under the new rates
 * at once, and (worker 0) jobs a rate parked in the retry set come back
 * to be priced again. */
void gate_reload(struct worker *w);
/* Bring the jobs a limit parked in the retry set back now, to be priced
 * again (after a reload, or when a backed-off pair's factor climbs). */
void gate_recall(struct worker *w);
/* Congested paths give back what their pool holds beyond a few messages
 * per connection (worker tick). */
void gate_shed(struct worker *w);
void gate_free(struct worker *w);

#endif
