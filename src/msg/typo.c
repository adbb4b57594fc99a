/* Recipient-domain typo detection: "gmial.com" is almost always a person's
 * slip for "gmail.com", and a reminder sent there is lost (or worse, read by
 * a squatter). The check only suggests; the address is never rewritten. */
#include <string.h>
#include <strings.h>

#include "herald/job.h"

#define TYPO_DOMAIN_MAX 64 /* longer names are not in any provider list */
#define TYPO_LONG_NAME  12 /* from this length on, two edits still count */

const char *const typo_default_domains[] = {
    "gmail.com",    "googlemail.com", "hotmail.com", "hotmail.co.uk", "hotmail.de",
    "hotmail.fr",   "outlook.com",    "live.com",    "msn.com",       "yahoo.com",
    "yahoo.co.uk",  "yahoo.de",       "yahoo.fr",    "ymail.com",     "icloud.com",
    "me.com",       "mac.com",        "aol.com",     "gmx.de",        "gmx.net",
    "gmx.com",      "web.de",         "t-online.de", "mail.com",      "protonmail.com",
    "proton.me",    "orange.fr",      "free.fr",     "comcast.net",   "verizon.net",
    NULL,
};

static int min3(int a, int b, int c)
{
    int m = a < b ? a : b;
    return m < c ? m : c;
}

/* Optimal-string-alignment distance (Damerau-Levenshtein where a swapped
 * pair counts as one edit), case-insensitive, given up early once every
 * cell of a row is over `limit`. Both strings are at most TYPO_DOMAIN_MAX. */
static int osa_distance(const char *a, size_t la, const char *b, size_t lb, int limit)
{
    int rows[3][TYPO_DOMAIN_MAX + 1];
    int *prev2 = rows[0], *prev = rows[1], *cur = rows[2];
    for (size_t j = 0; j <= lb; j++)
        prev[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = (int)i;
        int row_min = cur[0];
        char ca = (char)(a[i - 1] | 0x20);
        for (size_t j = 1; j <= lb; j++) {
            char cb = (char)(b[j - 1] | 0x20);
            int cost = ca != cb;
            cur[j] = min3(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost);
            if (i > 1 && j > 1 && ca == (char)(b[j - 2] | 0x20) &&
                (char)(a[i - 2] | 0x20) == cb && prev2[j - 2] + 1 < cur[j])
                cur[j] = prev2[j - 2] + 1;
            if (cur[j] < row_min) row_min = cur[j];
        }
        if (row_min > limit) return limit + 1;
        int *t = prev2;
        prev2 = prev;
        prev = cur;
        cur = t;
    }
    return prev[lb];
}

const char *typo_suggest(const char *domain, const char *const *list, size_t n_list)
{
    size_t len = domain ? strlen(domain) : 0;
    if (len == 0 || len > TYPO_DOMAIN_MAX) return NULL;
    for (size_t i = 0; i < n_list; i++)
        if (strcasecmp(domain, list[i]) == 0) return NULL; /* a real provider */
    const char *best = NULL;
    int best_d = 3;
    for (size_t i = 0; i < n_list; i++) {
        size_t ll = strlen(list[i]);
        if (ll > TYPO_DOMAIN_MAX) continue;
        int limit = ll >= TYPO_LONG_NAME ? 2 : 1;
        size_t diff = ll > len ? ll - len : len - ll;
        if (diff > (size_t)limit) continue;
        int d = osa_distance(domain, len, list[i], ll, limit);
        if (d <= limit && d < best_d) {
            best = list[i];
            best_d = d;
        }
    }
    return best;
}
