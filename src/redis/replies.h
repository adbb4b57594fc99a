/* Internal to src/redis: reply objects for hiredis's reader carved from
 * blocks the connection keeps, instead of one calloc per element and one
 * malloc per string (a read of 256 jobs is some 5,000 objects). */
#ifndef HERALD_REDIS_REPLIES_H
#define HERALD_REDIS_REPLIES_H

#include <hiredis/hiredis.h>

#include "herald/redis.h"

/* A reader whose objects live in s (its privdata). Objects stay valid
 * until reply_store_reset: call that only once a complete reply has been
 * handled, when the reader holds no half-built one. freeReplyObject must
 * never be called on them. */
redisReader *reply_store_reader(struct reply_store *s);
/* Forget every object; keeps up to REPLY_STORE_KEEP bytes of blocks. */
void reply_store_reset(struct reply_store *s);
void reply_store_free(struct reply_store *s);

#endif
