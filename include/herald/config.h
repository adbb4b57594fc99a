/* config: YAML file -> validated, immutable snapshot. A reload builds a new
 * snapshot and swaps it; nothing mutates a loaded config.
 *
 * Defaults are filled in once, at load (src/config/defaults.c): after
 * config_load every field holds the value the engine is to use, and readers
 * need no fallbacks of their own. The few zero values that remain mean
 * something and say so below (an unset TLS policy inherits, a rate with
 * count 0 is no cap, a NULL optional string is "none"). */
#ifndef HERALD_CONFIG_H
#define HERALD_CONFIG_H

#include <regex.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum cfg_tls_policy {
    CFG_TLS_UNSET = 0, /* inherit: tenant/provider without `tls`; never delivery.tls */
    CFG_TLS_OPPORTUNISTIC,
    CFG_TLS_REQUIRED,
    CFG_TLS_VERIFY,
};

enum cfg_relay_tls { CFG_RELAY_TLS_STARTTLS = 0, CFG_RELAY_TLS_IMPLICIT, CFG_RELAY_TLS_NONE };

/* "3600/h", "60/m", "5/s", "10/d": count per window. count == 0 means unset. */
struct cfg_rate {
    uint32_t count;
    uint32_t window_s;
};

struct cfg_strlist {
    char **items;
    size_t n;
};

struct cfg_redis {
    char *url;      /* default redis://127.0.0.1:6379/0 */
    char *jobs;     /* default herald:jobs */
    char *group;    /* default herald */
    char *events;   /* default herald:events */
    char *prefix;   /* key prefix for herald's other keys; default "herald:" */
    char *password_file; /* optional; AUTH password read from this file */
    int password_file_line, password_file_col; /* where it was written, for load errors */
    char *password_env;  /* optional; AUTH password from this env var */
    char *ca_file;       /* rediss://: CA bundle to verify the server (default: system store) */
    char *cert_file;     /* rediss://: client certificate (mutual TLS), optional */
    char *key_file;      /* its key (default: in cert_file) */
    int64_t connect_timeout_ms; /* TCP connect (and TLS handshake); default 5s */
    int64_t events_max_age_ms;  /* notes older than this are trimmed; default 30d, 0 keeps all */
    /* Longest wait for a reply while any is owed (no byte from Redis at
     * all meanwhile): a black-holed Redis costs the connection, not the
     * engine's intake forever. Default 15s; at least 2s (intake blocks 1s). */
    int64_t command_timeout_ms;
};

struct cfg_engine {
    uint32_t workers;        /* 0 in YAML "auto" -> number of CPUs (resolved at load) */
    bool workers_auto;       /* workers came from "auto" (or the default) */
    char *ehlo;              /* default: gethostname() */
    char *consumer;          /* consumer-name prefix; default hostname */
    uint32_t batch;          /* XREADGROUP COUNT; default 256 */
    uint32_t max_inflight;   /* jobs held per worker; default 2000 */
    int64_t claim_idle_ms;   /* XAUTOCLAIM min idle; default 60000 */
    int64_t idempotency_window_ms; /* same tenant+id is a duplicate this long; default 7d */
    int64_t shutdown_grace_ms; /* SIGTERM grace; default 30000 */
    /* A consumer of the job group idle this long with nothing pending (a
     * process that is gone) is removed from the group; default 1d, 0 never. */
    int64_t forget_consumers_ms;
    uint32_t max_field_bytes;   /* per job field; default 1 MiB */
    uint32_t max_message_bytes; /* built message; default 10 MiB */
    uint32_t max_reply_bytes;   /* largest Redis reply read; default 512 MiB */
};

struct cfg_egress_pool {
    char *name;
    struct cfg_strlist ips;  /* IPv4/IPv6 literals */
    char *ehlo;              /* EHLO name for this pool; default engine.ehlo */
};

struct cfg_dns {
    struct cfg_strlist servers; /* "ip:port" or "ip" */
};

struct cfg_route {
    char *pattern; /* "example.test", "*.test" or "*" */
    char *host;
    uint16_t port;
};

struct dkim_key;

/* One DKIM signature a tenant's messages get. */
struct cfg_dkim {
    char *selector;
    char *key;       /* path to PEM */
    /* "rsa-sha256" | "ed25519-sha256". As written when algorithm_given;
     * otherwise the loaded key's own algorithm, set by config_load_keys
     * (NULL before that, e.g. after config_load_string alone). */
    char *algorithm;
    bool algorithm_given; /* `algorithm:` was written: the key must match it */
    char *domain;    /* d=; NULL: the domain of the message's From */
    int64_t expire_ms; /* x= this long after t=; 0: no x= */
    int key_line, key_col; /* where `key` was written, for load errors */
    struct dkim_key *loaded; /* set by config_load_keys; shared read-only */
};

struct cfg_relay {
    char *host; /* NULL when no relay */
    uint16_t port;
    enum cfg_relay_tls tls;
    char *user;
    char *password_file;
    int password_file_line, password_file_col; /* where it was written, for load errors */
    char *password_env;
    bool allow_plaintext_auth;
    /* The relay's certificate must chain to a CA in ca_file (default:
     * delivery.ca_file, else the system store) and name `host`; only
     * insecure_skip_verify (a private relay without a CA) turns that off. */
    char *ca_file;
    bool insecure_skip_verify;
};

/* What to do with a message whose From domain herald cannot align
 * (no DKIM key for it, SPF not passing for every egress IP of the tenant). */
enum cfg_from_fallback {
    CFG_FROM_SEND = 0, /* default: send as is (receivers may fail DMARC) */
    CFG_FROM_REWRITE,  /* From: sender.address, tenant's address to Reply-To */
    CFG_FROM_REFUSE,   /* `rejected` note, reason unaligned-from */
};

/* A tenant template: subject inline, bodies read from files at load time
 * (paths relative to the config file). Placeholders are checked at load. */
struct cfg_template {
    char *name;
    char *subject;   /* required; no CR/LF */
    char *text;      /* file contents, NUL-terminated; NULL when absent */
    char *html;
    char *text_path; /* as resolved, for messages */
    char *html_path;
};

struct cfg_tenant {
    char *name;
    char *from;       /* required: default From address */
    char *from_name;  /* optional display name */
    char *reply_to;   /* optional */
    struct cfg_strlist domains; /* allowed From domains; default: the from domain */
    struct cfg_dkim *dkim;      /* signatures, in config order (dual signing) */
    size_t n_dkim;
    struct cfg_relay relay;     /* host NULL when absent */
    enum cfg_tls_policy tls;
    char *egress;               /* egress pool name; "default" when not set */
    struct cfg_rate rate;       /* optional tenant cap */
    uint32_t weight;            /* fair-share weight; default 1 */
    int64_t max_age_ms;         /* default: delivery.max_age_ms */
    enum cfg_from_fallback from_fallback;
    bool one_click_unsubscribe; /* add RFC 8058 List-Unsubscribe(-Post); needs unsubscribe: */
    struct cfg_template *templates;
    size_t n_templates;
    char *return_path; /* VERP return domain for MAIL FROM; NULL: the From address */
};

/* The platform's own sender identity, used when a From is rewritten. */
struct cfg_sender {
    char *address;             /* e.g. notify@platform.test; required by from_fallback: rewrite */
    int64_t spf_recheck_ms;    /* re-evaluate tenants' SPF this often; default 15m */
};

struct cfg_timeouts {
    int64_t connect_ms;    /* default 30s */
    int64_t banner_ms;     /* default 5m */
    int64_t command_ms;    /* default 5m */
    int64_t data_block_ms; /* default 3m */
    int64_t data_end_ms;   /* default 10m */
    int64_t idle_ms;       /* default 30s: keep an idle pooled connection this long */
};

struct cfg_delivery {
    uint16_t port;            /* default 25 */
    enum cfg_tls_policy tls;  /* default opportunistic */
    char *ca_file;
    int64_t *retry_ms;        /* default 1m,5m,15m,1h,4h */
    size_t n_retry;
    int64_t max_age_ms;       /* default 2d */
    struct cfg_timeouts timeouts;
};

struct cfg_provider {
    char *name;              /* "default" is the fallback */
    struct cfg_strlist mx;   /* MX host patterns */
    uint32_t connections;    /* default 10 */
    struct cfg_rate rate;
    uint32_t messages_per_connection; /* default 100 */
    enum cfg_tls_policy tls;
    /* Limits (connections, rate, messages per connection, reputation) per
     * egress IP x destination site (the set of exchangers a domain's MX
     * names) instead of pooled over the provider. Default: true for
     * "default", false for named providers; resolved at load. */
    bool per_site;
    bool per_site_given; /* written in the config */
};

/* One `bounce_rules:` item: checked in order before the built-in rules. */
struct cfg_bounce_rule {
    char *match;          /* the regex as written (POSIX extended, case-insensitive) */
    char *code;           /* enhanced-code prefix ("5.7.1", "5.7"), or NULL for any */
    const char *category; /* one of classify_categories[] (static) */
    regex_t re;           /* compiled once, at load */
    bool compiled;
};

/* recipients.policy: what a message over a recipient cap gets. */
enum cfg_rcpt_policy {
    CFG_RCPT_DEFER = 0, /* default: retry later */
    CFG_RCPT_DROP,      /* end the job `suppressed` */
};

/* recipients.limit: most sends a cap may count (the admission script
 * keeps one time per counted send, up to the largest count). */
#define CFG_RECIPIENT_CAP_MAX 1000

struct cfg_recipients {
    struct cfg_rate *limits; /* e.g. 3/h, 10/d: sliding windows */
    size_t n_limits;
    /* recipients.exempt: bit (1u << enum job_priority) set for each
     * priority that is neither checked nor counted against the caps. */
    unsigned exempt_mask;
    enum cfg_rcpt_policy over_limit; /* recipients.policy */
    /* The same as a word, "defer" or "drop" (never NULL after load): kept
     * for readers that still compare strings; use over_limit. */
    char *policy;
};

enum cfg_rep_action { CFG_REP_BACKOFF = 0, CFG_REP_SUSPEND, CFG_REP_IGNORE };

struct cfg_rep_rule {
    char *match;     /* POSIX extended regex, case-insensitive, on the reply text */
    regex_t re;
    bool compiled;
    enum cfg_rep_action action;
    int64_t suspend_ms;
};

/* Per egress IP x provider: a factor in [floor, max] scales rate and
 * connection limits (src/throttle/table.c, design.md "Reputation").
 * floor = the larger of min and min_rate / the provider's rate. A window
 * with throttle signals multiplies the factor by decrease x the share of
 * replies that were not signals; each clean interval raises it by
 * increase of itself, the step doubling while it stays clean. */
struct cfg_reputation {
    double min, max, increase, decrease;
    int64_t interval_ms;
    struct cfg_rate min_rate; /* absolute floor of the scaled rate; count 0 = none */
    int64_t window_ms;        /* signals are judged per window; default 1s */
    struct cfg_rep_rule *rules; /* checked in order before the built-in signals */
    size_t n_rules;
};

struct cfg_warmup {
    char *ip;
    int64_t start_day;   /* days since 1970-01-01 (UTC) of day 1 */
    uint32_t *schedule;  /* messages per day, day 1 first */
    size_t n_schedule;
};

/* `inbound:` what comes back after the 250 (issue "after the 250"):
 * the return domains herald accepts reports for, the listener inside
 * `herald run`, and the secret that signs the VERP return paths. */
struct cfg_inbound {
    struct cfg_strlist listen;  /* ADDR:PORT; none: this process does not listen */
    struct cfg_strlist domains; /* return domains it accepts mail for */
    char *secret_file;          /* >= 32 bytes; signs and checks VERP tokens */
    int secret_file_line, secret_file_col;
    uint32_t max_message_bytes; /* default 1 MB: reports are small */
    uint32_t max_connections;   /* default 64 */
    int64_t timeout_ms;         /* default 60s without a byte: the connection is closed */
    int64_t index_ttl_ms;       /* default 30d: how long a sent message can be matched */
    uint32_t rate_per_s;        /* default 50: messages a second, all peers together */
    /* A tenant whose complaints today pass this share of its deliveries
     * (with at least complaint_min_delivered of them) is suspended for
     * complaint_suspend_ms; 0: never. */
    double complaint_rate;
    uint32_t complaint_min_delivered; /* default 1000 */
    int64_t complaint_suspend_ms;     /* default 24h */
};

struct cfg_metrics {
    char *listen;     /* "127.0.0.1:9464" or "[::1]:9464"; NULL = no endpoint */
    char *token_file; /* bearer token scrapers must send; NULL = none asked */
};

/* `unsubscribe:` one-click unsubscribe (RFC 8058). base_url and
 * secret_file are needed as soon as a tenant sets one_click_unsubscribe;
 * listen is optional (another process may serve the links). */
struct cfg_unsubscribe {
    char *listen;      /* "127.0.0.1:8025"; NULL = no listener in this process */
    char *base_url;    /* "https://unsub.example.net", no trailing '/' */
    char *secret_file; /* at least 32 bytes, private to its owner */
    int secret_file_line, secret_file_col;
    int64_t max_age_ms; /* links older than this answer 410; default 90d */
};

enum cfg_typo_policy { CFG_TYPO_WARN = 0, CFG_TYPO_REJECT, CFG_TYPO_OFF };

/* `addresses:` recipient checks at intake. */
struct cfg_addresses {
    enum cfg_typo_policy typo_policy;   /* default warn */
    struct cfg_strlist typo_domains;    /* default: typo_default_domains */
};

struct config {
    char *path;
    struct cfg_metrics metrics;
    struct cfg_inbound inbound;
    struct cfg_unsubscribe unsubscribe;
    struct cfg_warmup *warmup;
    size_t n_warmup;
    struct cfg_redis redis;
    struct cfg_engine engine;
    struct cfg_egress_pool *egress; /* always has a pool named "default" */
    size_t n_egress;
    struct cfg_dns dns;
    struct cfg_route *routes;
    size_t n_routes;
    struct cfg_tenant *tenants;
    size_t n_tenants;
    struct cfg_delivery delivery;
    struct cfg_provider *providers; /* always has one named "default" */
    size_t n_providers;
    struct cfg_recipients recipients;
    struct cfg_reputation reputation;
    struct cfg_bounce_rule *bounce_rules;
    size_t n_bounce_rules;
    struct cfg_sender sender;
    struct cfg_strlist dnsbl; /* DNSBL zones check-domain queries; none by default */
    struct cfg_addresses addresses;
};

/* Load and validate path. On failure returns -HERR_CONFIG (or -errno when the
 * file cannot be read) and writes "file:line:col: message" into err. */
int config_load(const char *path, struct config **out, char *err, size_t errlen);
/* Same, from a string (tests, fuzzing); name is used in error messages.
 * Reads no other file: DKIM keys stay unloaded (see config_load_keys). */
int config_load_string(const char *name, const char *yaml, size_t len, struct config **out,
                       char *err, size_t errlen);
/* Load every tenant's DKIM keys (config_load does this); refuses key files
 * with loose permissions, unreadable, not PEM, of the wrong type for the
 * algorithm or RSA under 1024 bits, with "file:line:col: message" in err
 * pointing at the `key` value. Password files (redis.password_file, a
 * relay's password_file) are checked by the same rule (secret_file_open),
 * pointing at their value; they are read later, by config_read_secret.
 * Returns 0 or -HERR_CONFIG / -ENOMEM. */
int config_load_keys(struct config *cfg, char *err, size_t errlen);
void config_free(struct config *cfg);
void config_reputation_free(struct cfg_reputation *r);

const struct cfg_tenant *config_tenant(const struct config *cfg, const char *name);
const struct cfg_template *config_template(const struct cfg_tenant *t, const char *name);
/* Static route for a recipient domain: exact match first, then the longest
 * "*.suffix" match, then "*". NULL when none applies. Case-insensitive. */
const struct cfg_route *config_route(const struct config *cfg, const char *domain);
const struct cfg_egress_pool *config_egress(const struct config *cfg, const char *name);
/* The name a pool's connections EHLO with: its own ehlo, else engine.ehlo.
 * pool may be NULL. */
const char *config_egress_ehlo(const struct config *cfg, const struct cfg_egress_pool *pool);
const struct cfg_provider *config_provider(const struct config *cfg, const char *name);
/* The provider whose `mx` patterns ("*.google.com" or an exact name) match
 * an MX host name, first match in config order; else "default". */
const struct cfg_provider *config_provider_for_host(const struct config *cfg, const char *host);
/* The TLS policy for a delivery: the strictest of delivery.tls, the
 * tenant's and the provider's (either may be NULL or unset); a tenant or a
 * provider can tighten delivery.tls, never loosen it. */
enum cfg_tls_policy config_tls_policy(const struct config *cfg, const struct cfg_tenant *tenant,
                                      const struct cfg_provider *prov);

/* A secret named by config: the environment variable `env` if set in the
 * config (it must exist), else the first line of `file`, else "". Returns 0,
 * -ENOENT (variable unset), -HERR_TOO_LONG, -errno from opening file or
 * -HERR_CONFIG when file is not a regular file private to its owner. */
int config_read_secret(const char *file, const char *env, char *out, size_t outlen);

/* The unsubscribe secret (unsubscribe.secret_file) as the 32 bytes the
 * token keys derive from: SHA-256 of the file's bytes (one trailing
 * newline dropped), which must number at least 32. Returns 0, -errno,
 * -HERR_CONFIG (loose permissions, too short) with why filled. */
int config_unsub_secret(const struct config *cfg, unsigned char out[32], char *why, size_t whylen);

/* url for messages: "scheme://user:***@host..." when it carries a password
 * (userinfo ends at the last '@'), else url itself; truncated to len. */
const char *config_url_masked(const char *url, char *buf, size_t len);

/* Parse helpers, exported for tests: "30s", "5m", "2h", "2d", "250ms" -> ms;
 * "3600/h" -> rate. Return 0 or -HERR_MALFORMED. */
int config_parse_duration(const char *s, int64_t *out_ms);
int config_parse_rate(const char *s, struct cfg_rate *out);
/* "65536", "512k", "1MiB", "10M", "1G" (binary multiples; "b"/"B" optional). */
int config_parse_size(const char *s, uint64_t *out_bytes);
/* An egress IP's warm-up cap for `day` (days since the epoch, UTC): the
 * messages it may send that day, or -1 for no cap (not warming up, or past
 * its schedule). *day_no, when not NULL, gets its warm-up day (1 = start). */
int64_t config_warmup_cap(const struct config *cfg, const char *ip, int64_t day, int64_t *day_no);
void config_warmup_free(struct config *cfg);
/* RFC 3339 time or unix ms -> unix ms. */
int config_parse_time_ms(const char *s, int64_t *out_ms);
/* "127.0.0.1:9464" or "[::1]:9464" (literal addresses only) -> sockaddr. */
struct sockaddr_storage;
int config_parse_listen(const char *s, struct sockaddr_storage *sa, unsigned *len);
/* Policy words as written in the config ("opportunistic", "starttls", ...),
 * from the tables the loader parses with; never NULL ("inherit" for
 * CFG_TLS_UNSET, "?" for a value outside the enum). */
const char *config_tls_policy_name(enum cfg_tls_policy p);
const char *config_relay_tls_name(enum cfg_relay_tls t);
const char *config_from_fallback_name(enum cfg_from_fallback f);
const char *config_rcpt_policy_name(enum cfg_rcpt_policy p);
const char *config_typo_policy_name(enum cfg_typo_policy p);
const char *config_rep_action_name(enum cfg_rep_action a);

/* Human-readable effective settings (check-config output). */
void config_print_effective(const struct config *cfg, FILE *out);

#endif
