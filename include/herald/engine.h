/* engine: `herald run` — worker threads, each with its own ring, Redis
 * connections and SMTP pools, pulling jobs from the stream and writing one
 * terminal case note per job. */
#ifndef HERALD_ENGINE_H
#define HERALD_ENGINE_H

#include <stdbool.h>
#include <stdint.h>

#include "herald/config.h"
#include "herald/smtp.h"

struct engine_opts {
    const char *config_path;
    int64_t until_idle_ms; /* > 0: exit once nothing arrived or ran for this long */
};

/* Runs until SIGTERM/SIGINT (then drains within engine.shutdown_grace) and
 * returns a process exit code: 0 ok, 1 runtime failure, 2 config error. */
int engine_run(const struct engine_opts *opts);

/* Category of a delivery result for case notes (bad-mailbox, bad-domain,
 * policy, spam-block, quota, greylist, rate-limit, network, tls, timeout,
 * protocol, other). */
const char *classify_result(const struct smtp_result *res);
/* The same, with the config's `bounce_rules:` checked first, in order (each
 * regex compiled at load); cfg may be NULL (built-in rules only). */
struct config;
const char *classify_reply(const struct config *cfg, const struct smtp_result *res);

/* Lua scripts run by the note writer, exported for tests. */
extern const char *const notes_script_terminal;
extern const char *const inbound_script_note; /* src/inbound: a late report's note */
extern const char *const notes_script_unsubscribe;
extern const char *const notes_script_defer;
extern const char *const notes_script_mover;
extern const char *const notes_script_admit;
extern const char *const notes_script_cancel;
extern const char *const notes_script_lease;
extern const char *const notes_script_operator_bounce;

#endif
