/* herald stats: a tenant's outcomes per day and per recipient domain for
 * one month, from the counters the note scripts keep (never a scan of the
 * case-note stream). */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "herald/keys.h"

static const char stats_usage[] =
    "usage: herald stats -c FILE --tenant T [--month YYYY-MM] [--json]\n"
    "\n"
    "Case notes of one tenant in one month (UTC; default this month): per\n"
    "outcome, per day and per recipient domain, with the bounce rate (bounced\n"
    "/ delivered + bounced) and the deferral rate (deferred notes / delivery\n"
    "attempts), one-click unsubscribes (unsub), and what came back after the\n"
    "250 (tenants with return_path): late bounces and complaints, with the\n"
    "complaint rate (complaints / delivered). The counts are kept by the\n"
    "engine as it writes each note.\n";

static const char *const events[] = {"delivered",    "deferred",  "bounced",   "expired",
                                     "rejected",     "suppressed", "duplicate", "cancelled",
                                     "unsubscribed",
                                     /* reports after the 250 (inbound listener) */
                                     "late_bounced", "complained"};
#define N_EVENTS (sizeof events / sizeof events[0])

static int event_index(const char *name, size_t len)
{
    for (size_t i = 0; i < N_EVENTS; i++)
        if (strlen(events[i]) == len && memcmp(events[i], name, len) == 0)
            return (int)i;
    return -1;
}

static json_t *bucket(json_t *parent, const char *name)
{
    json_t *b = json_object_get(parent, name);
    if (!b) {
        b = json_object();
        for (size_t i = 0; i < N_EVENTS; i++)
            json_object_set_new(b, events[i], json_integer(0));
        json_object_set_new(parent, name, b);
    }
    return b;
}

static void add(json_t *b, int ev, long long n)
{
    json_t *v = json_object_get(b, events[ev]);
    json_integer_set(v, json_integer_value(v) + n);
}

static long long get(json_t *b, const char *ev)
{
    return json_integer_value(json_object_get(b, ev));
}

static void rates(json_t *b)
{
    long long d = get(b, "delivered"), f = get(b, "deferred"), bo = get(b, "bounced");
    json_object_set_new(b, "bounce_rate", json_real(d + bo ? (double)bo / (double)(d + bo) : 0));
    json_object_set_new(b, "deferral_rate",
                        json_real(d + bo + f ? (double)f / (double)(d + bo + f) : 0));
    /* Of what was accepted, how much came back later or was reported as
     * spam (the mailbox providers' 0.3% complaint line). */
    long long lb = get(b, "late_bounced"), cp = get(b, "complained");
    json_object_set_new(b, "late_bounce_rate", json_real(d ? (double)lb / (double)d : 0));
    json_object_set_new(b, "complaint_rate", json_real(d ? (double)cp / (double)d : 0));
}

static void print_row(const char *label, json_t *b)
{
    long long other = get(b, "duplicate") + get(b, "cancelled");
    printf("%-28.28s %10lld %9lld %8lld %8lld %9lld %10lld %6lld %7.2f%% %7.2f%% %6lld %6lld "
           "%6lld %7.3f%%\n",
           label, get(b, "delivered"), get(b, "deferred"), get(b, "bounced"), get(b, "expired"),
           get(b, "rejected"), get(b, "suppressed"), other,
           100.0 * json_real_value(json_object_get(b, "bounce_rate")),
           100.0 * json_real_value(json_object_get(b, "deferral_rate")), get(b, "unsubscribed"),
           get(b, "late_bounced"), get(b, "complained"),
           100.0 * json_real_value(json_object_get(b, "complaint_rate")));
}

static void print_header(const char *first)
{
    printf("%-28s %10s %9s %8s %8s %9s %10s %6s %8s %8s %6s %6s %6s %8s\n", first, "delivered",
           "deferred", "bounced", "expired", "rejected", "suppressed", "other", "bounce",
           "deferral", "unsub", "late", "compl", "compl%");
}

static int cmp_total(const void *a, const void *b)
{
    json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
    long long tx = 0, ty = 0;
    for (size_t i = 0; i < N_EVENTS; i++) {
        tx += get(json_object_get(x, "counts"), events[i]);
        ty += get(json_object_get(y, "counts"), events[i]);
    }
    return (ty > tx) - (ty < tx);
}

int cli_stats(int argc, char **argv)
{
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"tenant", required_argument, NULL, 't'},
                                         {"month", required_argument, NULL, 'm'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *path = NULL, *tenant = NULL, *month = NULL;
    bool as_json = false;
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "c:t:h", opts, NULL)) != -1) {
        switch (ch) {
        case 'c': path = optarg; break;
        case 't': tenant = optarg; break;
        case 'm': month = optarg; break;
        case 'j': as_json = true; break;
        case 'h': fputs(stats_usage, stdout); return 0;
        default: fputs(stats_usage, stderr); return 2;
        }
    }
    if (!tenant || optind < argc) {
        fputs(stats_usage, stderr);
        return 2;
    }
    char mbuf[32];
    if (month) {
        unsigned y, m;
        char extra;
        if (strlen(month) != 7 || sscanf(month, "%4u-%2u%c", &y, &m, &extra) != 2 || m < 1 ||
            m > 12) {
            fprintf(stderr, "herald stats: --month wants YYYY-MM, got '%s'\n", month);
            return 2;
        }
        snprintf(mbuf, sizeof mbuf, "%04u-%02u", y, m);
    } else {
        time_t now = time(NULL);
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(mbuf, sizeof mbuf, "%Y-%m", &tm);
    }
    struct config *cfg = NULL;
    redisContext *c = NULL;
    int rc = cli_open(path, &cfg, &c);
    if (rc)
        return rc;
    if (!config_tenant(cfg, tenant))
        fprintf(stderr, "herald stats: note: no tenant '%s' in %s (showing what Redis has)\n",
                tenant, path);
    struct keys keys;
    keys_init(&keys, cfg->redis.prefix);
    int year = 0, mon = 0;
    sscanf(mbuf, "%d-%d", &year, &mon);
    json_t *doc = json_object();
    json_object_set_new(doc, "tenant", json_string(tenant));
    json_object_set_new(doc, "month", json_string(mbuf));
    json_t *total = bucket(doc, "total");
    json_t *days = json_object(), *domains = json_object();
    /* One hash per day, fields "<event>|<domain>": 31 reads at most. */
    for (int day = 1; day <= 31; day++) {
        char key[KEYS_MAX];
        keys_stats_day(&keys, tenant, year, mon, day, key, sizeof key);
        redisReply *r = redisCommand(c, "HGETALL %s", key);
        if (!r || r->type != REDIS_REPLY_ARRAY) {
            fprintf(stderr, "herald stats: %s\n", r && r->str ? r->str : c->errstr);
            if (r)
                freeReplyObject(r);
            json_decref(doc);
            json_decref(days);
            json_decref(domains);
            redisFree(c);
            config_free(cfg);
            return 1;
        }
        char label[48];
        snprintf(label, sizeof label, "%s-%02d", mbuf, day);
        for (size_t i = 0; i + 1 < r->elements; i += 2) {
            const char *f = r->element[i]->str;
            long long n = strtoll(r->element[i + 1]->str, NULL, 10);
            const char *bar = strchr(f, '|');
            if (!bar)
                continue;
            int ev = event_index(f, (size_t)(bar - f));
            if (ev < 0)
                continue;
            const char *dom = bar + 1;
            add(total, ev, n);
            json_t *d = bucket(days, label);
            add(d, ev, n);
            add(bucket(domains, dom), ev, n);
            if (as_json) {
                json_t *by = json_object_get(d, "domains");
                if (!by) {
                    by = json_object();
                    json_object_set_new(d, "domains", by);
                }
                add(bucket(by, dom), ev, n);
            }
        }
        freeReplyObject(r);
    }
    rates(total);
    const char *k;
    json_t *v;
    json_object_foreach(days, k, v) rates(v);
    json_object_foreach(domains, k, v) rates(v);
    json_object_set_new(doc, "days", days);
    json_object_set_new(doc, "domains", domains);

    if (as_json) {
        char *s = json_dumps(doc, JSON_INDENT(2) | JSON_SORT_KEYS);
        if (s)
            puts(s);
        free(s);
    } else {
        printf("tenant %s, %s (UTC)\n\n", tenant, mbuf);
        print_header("month");
        print_row(mbuf, total);
        printf("\n");
        print_header("day");
        /* days sort as text: YYYY-MM-DD */
        const char **names = calloc(json_object_size(days) + 1, sizeof *names);
        size_t n = 0;
        json_object_foreach(days, k, v) names[n++] = k;
        for (size_t i = 1; i < n; i++)
            for (size_t j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
                const char *t = names[j];
                names[j] = names[j - 1];
                names[j - 1] = t;
            }
        for (size_t i = 0; i < n; i++)
            print_row(names[i], json_object_get(days, names[i]));
        free(names);
        printf("\n");
        print_header("recipient domain");
        size_t nd = json_object_size(domains);
        json_t **rows = calloc(nd + 1, sizeof *rows);
        size_t m = 0;
        json_object_foreach(domains, k, v)
        {
            json_t *row = json_object();
            json_object_set_new(row, "name", json_string(k));
            json_object_set(row, "counts", v);
            rows[m++] = row;
        }
        qsort(rows, m, sizeof *rows, cmp_total);
        for (size_t i = 0; i < m; i++) {
            print_row(json_string_value(json_object_get(rows[i], "name")),
                      json_object_get(rows[i], "counts"));
            json_decref(rows[i]);
        }
        free(rows);
    }
    json_decref(doc);
    redisFree(c);
    config_free(cfg);
    return 0;
}
