/* Subcommand entry points and the little they share. The CLI may block
 * (it is not an engine thread), so it uses hiredis' synchronous API. */
#ifndef HERALD_CLI_H
#define HERALD_CLI_H

#include <hiredis/hiredis.h>
#include <stdbool.h>

#include "herald/config.h"

int cli_run(int argc, char **argv);
int cli_check_config(int argc, char **argv);
int cli_enqueue(int argc, char **argv);
int cli_events(int argc, char **argv);
int cli_suppress(int argc, char **argv);
int cli_smtp_test(int argc, char **argv);
int cli_status(int argc, char **argv);
int cli_stats(int argc, char **argv);
int cli_check_domain(int argc, char **argv);
int cli_simulate(int argc, char **argv);
int cli_cancel(int argc, char **argv);
int cli_queue(int argc, char **argv);
int cli_suspend(int argc, char **argv);
int cli_resume(int argc, char **argv);

/* The config file: -c FILE when given, else $HERALD_CONFIG, else
 * /etc/herald/herald.yaml (where the package and the unit put it). */
#define CLI_DEFAULT_CONFIG "/etc/herald/herald.yaml"
const char *cli_config_path(const char *given);
/* Load the config (cli_config_path of path) or exit-code 2 with the error
 * printed. */
int cli_load_config(const char *path, struct config **out);
/* Connect per cfg->redis (AUTH, SELECT). NULL with a message on stderr. */
redisContext *cli_redis_connect(const struct config *cfg);
/* Both of the above; returns the exit code to use on failure, else 0. */
int cli_open(const char *path, struct config **cfg, redisContext **redis);
struct redis_addr;
/* rediss:// for the blocking CLI: a verified TLS connection to addr carried
 * by a thread; *fd is the plaintext end to give hiredis. 0 or -1 (printed). */
int cli_tls_tunnel(const struct redis_addr *addr, const struct config *cfg, int *fd);
/* s[0..n) for a terminal: control bytes (C0, DEL, UTF-8 C1 controls) and
 * bytes that are not valid UTF-8 become \xHH, a backslash \\, so a value
 * from a remote server or a producer cannot move the cursor, retitle the
 * window or inject a line; valid UTF-8 text stays as it is. Truncated with
 * "..." to fit outlen. Returns out. */
const char *cli_term_safe(char *out, size_t outlen, const char *s, size_t n);
/* Format a unix-ms timestamp as "2026-11-22 14:03:07.123Z". */
void cli_format_ms(long long ms, char *out, size_t outlen);

#endif
