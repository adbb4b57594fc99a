/* Internal to the engine: the limits of a path that every process sending
 * from its egress IP shares through Redis (one script, scripts.c): send
 * slots taken from the path's GCRA in small blocks (about 100 ms of the
 * rate, so there is no round trip per message), each process's grant of
 * the path's connections, renewed every second and expiring if the
 * process dies, and the path's reputation factor (the lowest any live
 * process has). */
#ifndef HERALD_ENGINE_LEASE_H
#define HERALD_ENGINE_LEASE_H

#include <stdbool.h>
#include <stdint.h>

#include "herald/config.h"
#include "herald/throttle.h"

struct worker;

/* The rate side, for the gate: true when this process holds a slot for
 * the path (and takes it); false when it must wait (a block was asked for
 * if none is on its way). *wait_ms: how long to wait before asking again. */
bool lease_take(struct worker *w, struct throttle_pair *p, const struct cfg_provider *prov,
                int64_t now_mono_ms, int64_t *wait_ms);
/* Give back a slot taken for a message that did not go after all. */
void lease_untake(struct throttle_pair *p);
/* The connections this process may open on the path now (its grant; 1
 * until the first grant arrives, which this asks for). */
uint32_t lease_connections(struct worker *w, struct throttle_pair *p,
                           const struct cfg_provider *prov, uint32_t limit);
/* Worker 0's tick: renew the grants of paths used in the last minute. */
void lease_tick(struct worker *w, int64_t now_mono_ms);

#endif
