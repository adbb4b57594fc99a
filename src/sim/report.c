/* What a simulation says (sim.h): a table per site, egress IP and tenant,
 * the same numbers as one JSON document, and the files gnuplot draws
 * rate and queue depth per site from. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "herald/sim.h"

static const char *const kind_title[SIM_E_COUNT] = {"site", "egress IP", "tenant"};
static const char *const kind_key[SIM_E_COUNT] = {"sites", "egress_ips", "tenants"};

static bool active(const struct sim_stats *s)
{
    if (s->jobs || s->delivered || s->deferred || s->bounced || s->expired) return true;
    for (int r = 0; r < SHAPE_R_COUNT; r++)
        if (s->parked[r] || s->waits[r]) return true;
    return false;
}

static void fmt_ms(int64_t ms, char *out, size_t len)
{
    if (ms < 0)
        snprintf(out, len, "-");
    else if (ms < 10000)
        snprintf(out, len, "%.2fs", (double)ms / 1000);
    else if (ms < 600000)
        snprintf(out, len, "%.0fs", (double)ms / 1000);
    else if (ms < 36000000)
        snprintf(out, len, "%lldm%02llds", (long long)(ms / 60000), (long long)(ms / 1000 % 60));
    else
        snprintf(out, len, "%lldh%02lldm", (long long)(ms / 3600000), (long long)(ms / 60000 % 60));
}

static uint64_t total(const uint64_t *a)
{
    uint64_t n = 0;
    for (int r = 0; r < SHAPE_R_COUNT; r++)
        n += a[r];
    return n;
}

/* "rate=12 tenant-share=3" for the nonzero reasons, or "-". */
static void reasons(const uint64_t *a, char *out, size_t len)
{
    size_t o = 0;
    out[0] = 0;
    for (int r = 0; r < SHAPE_R_COUNT && o < len; r++)
        if (a[r])
            o +=
                (size_t)snprintf(out + o, len - o, "%s%s=%llu", o ? " " : "",
                                 shape_reason_name((enum shape_reason)r), (unsigned long long)a[r]);
    if (!out[0]) snprintf(out, len, "-");
}

void sim_report_text(const struct sim_result *r, FILE *out)
{
    uint64_t delivered = 0;
    for (size_t i = 0; i < r->n[SIM_E_SITE]; i++)
        delivered += r->ent[SIM_E_SITE][i].delivered;
    char vt[32];
    fmt_ms(r->end_ms, vt, sizeof vt);
    fprintf(out,
            "simulated %llu jobs: %llu delivered, %llu pending at the end; %s of virtual time "
            "in %.2f s (%llu events, %u worker%s)\n",
            (unsigned long long)r->jobs, (unsigned long long)delivered,
            (unsigned long long)r->pending, vt, r->wall_s, (unsigned long long)r->events,
            r->workers, r->workers == 1 ? "" : "s");
    if (r->recalls)
        fprintf(out,
                "recalls of rate-parked jobs (a reputation factor rose): %llu, bringing back "
                "%llu jobs\n",
                (unsigned long long)r->recalls, (unsigned long long)r->recalled);
    for (int k = 0; k < SIM_E_COUNT; k++) {
        fprintf(out, "\n%-24s %8s %9s %8s %7s %8s %7s %7s %7s %8s %8s\n", kind_title[k],
                k == SIM_E_IP ? "" : "jobs", "delivered", "steady/s", "peak/s", "deferred",
                "signals", "bounced", "expired", "p50", "p99");
        for (size_t i = 0; i < r->n[k]; i++) {
            const struct sim_stats *s = &r->ent[k][i];
            if (!active(s)) continue;
            char p50[32], p99[32], jobs[24] = "";
            fmt_ms(s->delivered ? s->p50_ms : -1, p50, sizeof p50);
            fmt_ms(s->delivered ? s->p99_ms : -1, p99, sizeof p99);
            if (k != SIM_E_IP) snprintf(jobs, sizeof jobs, "%llu", (unsigned long long)s->jobs);
            fprintf(out, "%-24.24s %8s %9llu %8.2f %7.1f %8llu %7llu %7llu %7llu %8s %8s\n",
                    s->name, jobs, (unsigned long long)s->delivered, s->steady_per_s, s->peak_per_s,
                    (unsigned long long)s->deferred, (unsigned long long)s->signals,
                    (unsigned long long)s->bounced, (unsigned long long)s->expired, p50, p99);
            char w[256], p[256];
            reasons(s->waits, w, sizeof w);
            reasons(s->parked, p, sizeof p);
            if (total(s->waits) || total(s->parked))
                fprintf(out, "  %-22s waits: %s; parked: %s\n", "", w, p);
        }
    }
    fprintf(out, "\n%-24s %-16s %-24s %10s %10s %10s %8s\n", "path: egress IP", "provider",
            "site (per-site limits)", "factor min", "factor end", "replies ok", "signals");
    for (size_t i = 0; i < r->n_paths; i++) {
        const struct sim_path *p = &r->paths[i];
        fprintf(out, "%-24.24s %-16.16s %-24.24s %10.3f %10.3f %10llu %8llu\n", p->ip,
                p->provider, p->site[0] ? p->site : "(pooled)", p->factor_min, p->factor_end,
                (unsigned long long)p->sent, (unsigned long long)p->signals);
    }
}

/* 10 s buckets, longer when the run is long (at most 360 of them). */
static int64_t bucket_s(const struct sim_result *r)
{
    int64_t b = 10;
    while (r->end_ms / 1000 / b > 360)
        b *= 2;
    return b;
}

static json_t *reasons_json(const uint64_t *a)
{
    json_t *o = json_object();
    for (int r = 1; r < SHAPE_R_COUNT; r++)
        json_object_set_new(o, shape_reason_name((enum shape_reason)r),
                            json_integer((json_int_t)a[r]));
    return o;
}

static json_t *stats_json(const struct sim_stats *s, int kind, int64_t b)
{
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(s->name));
    if (kind != SIM_E_IP) json_object_set_new(o, "jobs", json_integer((json_int_t)s->jobs));
    json_object_set_new(o, "delivered", json_integer((json_int_t)s->delivered));
    json_object_set_new(o, "deferred", json_integer((json_int_t)s->deferred));
    json_object_set_new(o, "signals", json_integer((json_int_t)s->signals));
    json_object_set_new(o, "bounced", json_integer((json_int_t)s->bounced));
    json_object_set_new(o, "expired", json_integer((json_int_t)s->expired));
    json_object_set_new(o, "waits", reasons_json(s->waits));
    json_object_set_new(o, "parked", reasons_json(s->parked));
    json_object_set_new(o, "steady_per_s", json_real(s->steady_per_s));
    json_object_set_new(o, "peak_per_s", json_real(s->peak_per_s));
    json_object_set_new(o, "p50_ms", s->delivered ? json_integer(s->p50_ms) : json_null());
    json_object_set_new(o, "p99_ms", s->delivered ? json_integer(s->p99_ms) : json_null());
    json_object_set_new(o, "max_ms", s->delivered ? json_integer(s->max_ms) : json_null());
    json_object_set_new(o, "first_delivery_ms",
                        s->first_ms >= 0 ? json_integer(s->first_ms) : json_null());
    json_object_set_new(o, "last_delivery_ms",
                        s->last_ms >= 0 ? json_integer(s->last_ms) : json_null());
    json_t *rate = json_array(), *depth = kind == SIM_E_SITE ? json_array() : NULL;
    int64_t n = ((int64_t)s->n_sec + b - 1) / b;
    for (int64_t i = 0; i < n; i++) {
        json_array_append_new(rate, json_real(sim_rate(s, SIM_S_DELIVERED, i * b, i * b + b)));
        if (depth) {
            int64_t last =
                i * b + b - 1 < (int64_t)s->n_sec ? i * b + b - 1 : (int64_t)s->n_sec - 1;
            json_array_append_new(depth, json_integer(s->series[SIM_S_DEPTH][last]));
        }
    }
    json_object_set_new(o, "delivered_per_s", rate);
    if (depth) json_object_set_new(o, "queue_depth", depth);
    return o;
}

int sim_report_json(const struct sim_result *r, FILE *out)
{
    json_t *doc = json_object();
    if (!doc) return -ENOMEM;
    int64_t b = bucket_s(r);
    json_object_set_new(doc, "jobs", json_integer((json_int_t)r->jobs));
    json_object_set_new(doc, "pending", json_integer((json_int_t)r->pending));
    json_object_set_new(doc, "virtual_ms", json_integer(r->end_ms));
    json_object_set_new(doc, "wall_s", json_real(r->wall_s));
    json_object_set_new(doc, "events", json_integer((json_int_t)r->events));
    json_object_set_new(doc, "workers", json_integer((json_int_t)r->workers));
    json_object_set_new(doc, "bucket_s", json_integer(b));
    json_object_set_new(doc, "recalls", json_integer((json_int_t)r->recalls));
    json_object_set_new(doc, "recalled", json_integer((json_int_t)r->recalled));
    for (int k = 0; k < SIM_E_COUNT; k++) {
        json_t *a = json_array();
        for (size_t i = 0; i < r->n[k]; i++)
            if (active(&r->ent[k][i])) json_array_append_new(a, stats_json(&r->ent[k][i], k, b));
        json_object_set_new(doc, kind_key[k], a);
    }
    json_t *paths = json_array();
    for (size_t i = 0; i < r->n_paths; i++) {
        const struct sim_path *p = &r->paths[i];
        json_t *o = json_object();
        json_object_set_new(o, "egress_ip", json_string(p->ip));
        json_object_set_new(o, "provider", json_string(p->provider));
        if (p->site[0]) json_object_set_new(o, "site", json_string(p->site));
        json_object_set_new(o, "factor_min", json_real(p->factor_min));
        json_object_set_new(o, "factor_end", json_real(p->factor_end));
        json_object_set_new(o, "replies_ok", json_integer((json_int_t)p->sent));
        json_object_set_new(o, "signals", json_integer((json_int_t)p->signals));
        json_array_append_new(paths, o);
    }
    json_object_set_new(doc, "paths", paths);
    int rc = json_dumpf(doc, out, JSON_INDENT(2) | JSON_REAL_PRECISION(6));
    fputc('\n', out);
    json_decref(doc);
    return rc < 0 ? -EIO : 0;
}

/* A string for a single-quoted gnuplot literal ('' is a quote). */
static void gp_quote(FILE *f, const char *s)
{
    fputc('\'', f);
    for (; *s; s++) {
        if (*s == '\'') fputc('\'', f);
        fputc(*s, f);
    }
    fputc('\'', f);
}

int sim_report_plot_files(const struct sim_result *r, const char *data_path,
                          const char *script_path, const char *png_path)
{
    FILE *d = fopen(data_path, "w");
    if (!d) return -errno;
    int64_t b = bucket_s(r);
    size_t n_blocks = 0;
    for (size_t i = 0; i < r->n[SIM_E_SITE]; i++) {
        const struct sim_stats *s = &r->ent[SIM_E_SITE][i];
        if (!s->jobs) continue;
        fprintf(d, "# %s\n", s->name);
        int64_t n = ((int64_t)s->n_sec + b - 1) / b;
        for (int64_t k = 0; k < n; k++) {
            int64_t last =
                k * b + b - 1 < (int64_t)s->n_sec ? k * b + b - 1 : (int64_t)s->n_sec - 1;
            fprintf(d, "%lld %.3f %u\n", (long long)(k * b + b),
                    sim_rate(s, SIM_S_DELIVERED, k * b, k * b + b), s->series[SIM_S_DEPTH][last]);
        }
        if (n == 0) fprintf(d, "0 0 0\n");
        fprintf(d, "\n\n");
        n_blocks++;
    }
    if (fclose(d) != 0) return -EIO;
    FILE *f = fopen(script_path, "w");
    if (!f) return -errno;
    fprintf(f, "set terminal png size 1200,900\nset output ");
    gp_quote(f, png_path);
    fprintf(f,
            "\nset multiplot layout 2,1 title 'herald simulate (%lld s buckets)'\n"
            "set xlabel 'virtual time (s)'\nset key outside right\nset grid\n",
            (long long)b);
    for (int col = 2; col <= 3; col++) {
        fprintf(f, "set ylabel '%s'\nplot ", col == 2 ? "delivered per second" : "queue depth");
        size_t blk = 0;
        for (size_t i = 0; i < r->n[SIM_E_SITE]; i++) {
            const struct sim_stats *s = &r->ent[SIM_E_SITE][i];
            if (!s->jobs) continue;
            if (blk) fputs(", ", f);
            gp_quote(f, data_path);
            fprintf(f, " index %zu using 1:%d with lines lw 2 title ", blk, col);
            gp_quote(f, s->name);
            blk++;
        }
        if (!blk) fputs("0 title 'no jobs'", f);
        fputc('\n', f);
    }
    fprintf(f, "unset multiplot\n");
    (void)n_blocks;
    return fclose(f) == 0 ? 0 : -EIO;
}
