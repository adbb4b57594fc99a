/* VERP return paths for tenants with `return_path` (verp.c). */
#ifndef HERALD_ENGINE_VERP_H
#define HERALD_ENGINE_VERP_H

#include <stdint.h>

#include "herald/config.h"

struct delivery;

/* The envelope sender b+<token>@<return_path> for this attempt, kept in
 * the delivery, with the job's details indexed in Redis for the match of
 * a late report; NULL when the tenant has no return_path (or the secret
 * is not loaded): the caller keeps the From address. */
const char *verp_return_path(struct delivery *d, const struct cfg_tenant *tenant, int64_t now_ms);

#endif
