/* keys: the one Redis key schema. Every key herald reads or writes, by the
 * engine or a CLI command, is named here, so the schema can be read (and
 * changed, e.g. for cluster hash tags) in one place. */
#ifndef HERALD_KEYS_H
#define HERALD_KEYS_H

#include <stddef.h>
#include <stdint.h>

#define KEYS_MAX 640 /* longest key: prefix (<= 128) + tenant (<= 64) + id (<= 400) */

/* The fixed keys of one prefix (redis.prefix, default "herald:"). */
struct keys {
    char prefix[129];
    char retry[160];      /* zset of parked jobs (deferred, scheduled, throttled) */
    char job_prefix[160]; /* + stream entry id: a parked job's hash */
    char stats[160];      /* + ":<tenant>:<YYYY-MM-DD>": per-tenant day counts */
    /* + ":<recipient key>" (job.h to_key): a string, the ms times of the
     * recipient's counted sends, newest first, space-separated, at most
     * max(recipients.limit count) of them, expiring when the newest leaves
     * the longest window. Built by the admission script (scripts.c). */
    char rcap[160];
    char suppress[160];   /* the global suppression set */
    char reputation[160]; /* hash: factor and suspension per IP x provider */
    char warmup[160];     /* hash: today's count per egress IP */
    char status_glob[160];/* pattern matching every process's status document */
};

/* Fill k for prefix (NULL: "herald:"); -ENAMETOOLONG past 128 bytes. */
int keys_init(struct keys *k, const char *prefix);

/* Per-tenant and per-job keys. Each writes a NUL-terminated key into out
 * (cap bytes, KEYS_MAX always suffices for valid tenants and ids) and
 * returns 0, or -ENAMETOOLONG when it was cut. */
int keys_state(const struct keys *k, const char *tenant, const char *id, char *out, size_t cap);
int keys_idem(const struct keys *k, const char *tenant, const char *id, char *out, size_t cap);
/* tenant NULL: the global set (k->suppress). */
int keys_suppress(const struct keys *k, const char *tenant, char *out, size_t cap);
/* Why and when each address of that list was added: a hash, address ->
 * "<unix ms> <source> <reason>" (source bounce, operator or import). */
int keys_suppress_info(const struct keys *k, const char *tenant, char *out, size_t cap);
/* A one-click unsubscribe already taken: tenant, the token's issue day
 * and the recipient key (unsub.c; a string kept for unsubscribe.max_age). */
int keys_unsub_once(const struct keys *k, const char *tenant, unsigned day, const char *rcpt,
                    char *out, size_t cap);
int keys_tenant_rate(const struct keys *k, const char *tenant, char *out, size_t cap);
/* A message sent with a VERP return path, by its job reference (the
 * token's): a hash of tenant, id, ref, to, message_id, attempt, kept
 * inbound.index_ttl; and the same reference by the message's Message-ID,
 * for a report that lost the token. The report's own once-only mark
 * (a late bounce or complaint noted once per job and kind). */
/* The suspension hash (herald suspend, and the complaint back-off):
 * "<kind>=<value>" -> "<until ms> <set at ms> <reason>". */
int keys_suspend(const struct keys *k, char *out, size_t cap);
int keys_verp(const struct keys *k, uint64_t ref, char *out, size_t cap);
int keys_verp_msgid(const struct keys *k, const char *message_id, char *out, size_t cap);
int keys_verp_once(const struct keys *k, uint64_t ref, const char *kind, char *out, size_t cap);
int keys_job(const struct keys *k, const char *stream_id, char *out, size_t cap);
int keys_status(const struct keys *k, const char *consumer, char *out, size_t cap);
/* A path's shared limits (egress IP x provider or site group): its GCRA
 * and its connection grants. */
int keys_path_rate(const struct keys *k, const char *ip, const char *group, char *out, size_t cap);
int keys_path_conns(const struct keys *k, const char *ip, const char *group, char *out,
                    size_t cap);
int keys_path_reputation(const struct keys *k, const char *ip, const char *group, char *out,
                         size_t cap);
int keys_stats_day(const struct keys *k, const char *tenant, int y, int m, int d, char *out,
                   size_t cap);

#endif
