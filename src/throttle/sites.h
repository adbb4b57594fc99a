/* Internal to throttle: the per-site map's life, owned by the table. */
#ifndef HERALD_THROTTLE_SITES_H
#define HERALD_THROTTLE_SITES_H

#include "herald/throttle.h"

int throttle_sites_new(struct throttle_table *t);
void throttle_sites_free(struct throttle_table *t);

#endif
