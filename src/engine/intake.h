/* Internal to the engine: intake. Reading the jobs stream (first this
 * consumer's own pending entries, then new ones), claiming entries other
 * consumers left idle, keeping our own claims fresh, and moving due jobs
 * from the retry set back into the stream. Each entry read becomes a
 * delivery, decoded and checked here and then handed to admission. */
#ifndef HERALD_ENGINE_INTAKE_H
#define HERALD_ENGINE_INTAKE_H

#include <stdint.h>

struct worker;

/* Read more when there is room and no read is outstanding. */
void intake_read(struct worker *w);
/* The intake connection is up: make sure the consumer group exists. */
void intake_ensure_group(struct worker *w);
/* The periodic part (claims, claim refresh, the retry mover). */
void intake_tick(struct worker *w, int64_t now);

#endif
