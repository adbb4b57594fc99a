/* Internal to the engine: where a message goes and how. The tenant's relay
 * (a smarthost, resolved like any host through the engine's resolver, by
 * its TTL), else a static route, else the recipient domain's MX; then for
 * one address: the egress IP, the TLS policy and the pool's limits. */
#ifndef HERALD_ENGINE_ROUTE_H
#define HERALD_ENGINE_ROUTE_H

#include "herald/pool.h"

struct delivery;
/* An admitted job: find its addresses (d -> ROUTING while a lookup runs)
 * and submit it to the first. */
void route_dispatch(struct delivery *d);
/* Choose egress, security and limits for one address and hand the message
 * to the gate (gate.h). Also used for failover to the next address. */
void route_submit(struct delivery *d, const struct pool_target *target);

#endif
