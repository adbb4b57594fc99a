/* The `unsubscribe:` section (one-click unsubscribe, RFC 8058) and the
 * reading of its secret. Kept apart from sections.c so the listener's keys
 * can change without touching the others. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sys/socket.h>


#include "config/loader.h"
#include "herald/feedback.h"

#define DAY_MS ((int64_t)86400000)
/* Token days are 16 bits (feedback.h); a longer age could not be told. */
#define UNSUB_MAX_AGE_DAYS 3650
/* A secret file is a few dozen bytes; a bound keeps a stray path out. */

/* What a base URL may hold: it is written into a header between angle
 * brackets and must not need quoting there (RFC 3986 unreserved, gen- and
 * sub-delims other than the ones header parsers split on). */
static bool url_char_ok(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           strchr("-._~:/?#[]@!$&'()*+;=%", c);
}

static const char *check_base_url(char *s)
{
    if (strncmp(s, "https://", 8) != 0) return "an https:// URL (RFC 8058 requires https)";
    if (!s[8] || s[8] == '/') return "an https:// URL with a host";
    for (const char *p = s; *p; p++)
        if (!url_char_ok((unsigned char)*p)) return "a URL without spaces, quotes or commas";
    size_t n = strlen(s);
    if (n > 256) return "a URL of at most 256 bytes";
    while (n > 8 && s[n - 1] == '/')
        s[--n] = '\0'; /* links are base_url + "/u/..." */
    return NULL;
}

static int unsub_key(struct loader *L, const char *key, const struct ynode *k,
                     const struct ynode *v, void *obj)
{
    struct cfg_unsubscribe *u = obj;
    char tmp[160];
    (void)k;
    if (strcmp(key, "secret_file") == 0) {
        u->secret_file_line = v->line;
        u->secret_file_col = v->col;
        return loader_str(L, v, &u->secret_file);
    }
    if (strcmp(key, "max_age") == 0) {
        int rc = loader_duration(L, v, DAY_MS, &u->max_age_ms);
        if (rc == 0 && u->max_age_ms > UNSUB_MAX_AGE_DAYS * DAY_MS)
            return loader_fail(L, v, "unsubscribe.max_age: at most %dd, got %s", UNSUB_MAX_AGE_DAYS,
                               loader_show(v, tmp, sizeof tmp));
        return rc;
    }
    if (strcmp(key, "base_url") == 0) {
        int rc = loader_str(L, v, &u->base_url);
        const char *why = rc == 0 && u->base_url ? check_base_url(u->base_url) : NULL;
        if (why)
            return loader_fail(L, v, "unsubscribe.base_url: expected %s, got %s", why,
                               loader_show(v, tmp, sizeof tmp));
        return rc;
    }
    if (strcmp(key, "listen") != 0) return LOADER_UNKNOWN_KEY;
    int rc = loader_str(L, v, &u->listen);
    if (rc || !u->listen) return rc;
    struct sockaddr_storage sa;
    unsigned len;
    if (config_parse_listen(u->listen, &sa, &len) < 0)
        return loader_fail(L, v, "unsubscribe.listen: expected IP:PORT or [IPv6]:PORT, got '%s'",
                           u->listen);
    return 0;
}

int loader_unsubscribe(struct loader *L, const struct ynode *k, const struct ynode *v)
{
    struct cfg_unsubscribe *u = &L->cfg->unsubscribe;
    int rc = loader_walk(L, v, "unsubscribe", unsub_key, u);
    if (rc) return rc;
    if (u->listen && (!u->secret_file || !u->base_url))
        return loader_fail(L, k,
                           "unsubscribe.listen needs unsubscribe.secret_file and "
                           "unsubscribe.base_url");
    if (u->max_age_ms == 0) u->max_age_ms = 90 * DAY_MS;
    return 0;
}

int config_unsub_secret(const struct config *cfg, unsigned char out[32], char *why, size_t whylen)
{
    const char *path = cfg->unsubscribe.secret_file;
    if (!path) {
        snprintf(why, whylen, "unsubscribe.secret_file is not set");
        return -HERR_CONFIG;
    }
    return fb_secret_digest(path, "unsubscribe secret file", out, why, whylen);
}
