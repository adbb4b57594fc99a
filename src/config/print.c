/* config_print_effective: what `herald check-config` shows — every setting
 * after defaults, so an operator sees what the engine will actually do.
 * Secrets are never printed: only where they come from. */
#include <inttypes.h>
#include <stdio.h>
#include <time.h>
#include <string.h>

#include "config/loader.h"
#include "herald/config.h"
#include "herald/dkim.h"

static const char *fmt_duration(int64_t ms, char *buf, size_t len)
{
    static const struct {
        int64_t ms;
        const char *unit;
    } units[] = {{86400000, "d"}, {3600000, "h"}, {60000, "m"}, {1000, "s"}};
    if (ms == 0) {
        snprintf(buf, len, "0s");
        return buf;
    }
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (ms % units[i].ms == 0) {
            snprintf(buf, len, "%" PRId64 "%s", ms / units[i].ms, units[i].unit);
            return buf;
        }
    }
    snprintf(buf, len, "%" PRId64 "ms", ms);
    return buf;
}

static const char *fmt_rate(const struct cfg_rate *r, char *buf, size_t len)
{
    if (r->count == 0) {
        snprintf(buf, len, "unlimited");
        return buf;
    }
    char win[32];
    switch (r->window_s) {
    case 1:
        snprintf(win, sizeof win, "s");
        break;
    case 60:
        snprintf(win, sizeof win, "m");
        break;
    case 3600:
        snprintf(win, sizeof win, "h");
        break;
    case 86400:
        snprintf(win, sizeof win, "d");
        break;
    default:
        fmt_duration((int64_t)r->window_s * 1000, win, sizeof win);
    }
    snprintf(buf, len, "%" PRIu32 "/%s", r->count, win);
    return buf;
}

static void print_list(FILE *out, const struct cfg_strlist *l, const char *empty)
{
    if (l->n == 0) {
        fputs(empty, out);
        return;
    }
    for (size_t i = 0; i < l->n; i++)
        fprintf(out, "%s%s", i ? ", " : "", l->items[i]);
}

/* recipients.exempt: the priorities in the mask, in table order. */
static void print_exempt(FILE *out, unsigned mask)
{
    bool any = false;
    for (size_t i = 0; i < cfg_enum_priority.n; i++) {
        if (!(mask & (1u << cfg_enum_priority.names[i].value))) continue;
        fprintf(out, "%s%s", any ? ", " : "", cfg_enum_priority.names[i].name);
        any = true;
    }
    if (!any) fputs("none", out);
}

/* delivery.tls is a floor: a tenant or provider policy that is unset or
 * looser adds nothing, so say what applies rather than what was written. */
static void print_tls(FILE *out, enum cfg_tls_policy pol, const struct cfg_delivery *d)
{
    if (pol == CFG_TLS_UNSET)
        fprintf(out, "    tls             %s (delivery.tls)\n", config_tls_policy_name(d->tls));
    else if (pol < d->tls)
        fprintf(out, "    tls             %s (delivery.tls; %s is looser)\n",
                config_tls_policy_name(d->tls), config_tls_policy_name(pol));
    else
        fprintf(out, "    tls             %s\n", config_tls_policy_name(pol));
}

/* The userinfo ends at the last '@', as redis_addr_parse reads it: only
 * digits (the db) may follow the host, so every earlier '@' (and any '/')
 * belongs to the password, and all of it is masked. */
const char *config_url_masked(const char *url, char *buf, size_t len)
{
    const char *scheme = url ? strstr(url, "://") : NULL;
    const char *at = scheme ? strrchr(scheme + 3, '@') : NULL;
    const char *colon = at ? memchr(scheme + 3, ':', (size_t)(at - scheme - 3)) : NULL;
    if (!colon)
        snprintf(buf, len, "%s", url ? url : "");
    else
        snprintf(buf, len, "%.*s:***%s", (int)(colon - url), url, at);
    return buf;
}

static const char *secret_source(const char *file, const char *env, char *buf, size_t len)
{
    if (file)
        snprintf(buf, len, "file %s", file);
    else if (env)
        snprintf(buf, len, "env $%s", env);
    else
        snprintf(buf, len, "none");
    return buf;
}

/* The TXT record(s) to publish for a loaded key: saves the operator from
 * deriving the public key by hand, and shows what verifiers will fetch. */
static void print_dkim_txt(FILE *out, const struct cfg_dkim *dk, const struct cfg_tenant *tn)
{
    struct hbuf txt;
    hbuf_init(&txt);
    if (dkim_key_txt(dk->loaded, &txt) == 0) {
        size_t n = dk->domain ? 1 : tn->domains.n;
        for (size_t i = 0; i < n; i++)
            fprintf(out, "      publish       %s._domainkey.%s TXT \"%s\"\n", dk->selector,
                    dk->domain ? dk->domain : tn->domains.items[i], txt.data);
    }
    hbuf_free(&txt);
}

/* The inbound listener and what DNS its return domains need. */
static void print_inbound(const struct config *cfg, FILE *out)
{
    const struct cfg_inbound *in = &cfg->inbound;
    bool any = in->listen.n > 0;
    for (size_t i = 0; i < cfg->n_tenants; i++)
        any |= cfg->tenants[i].return_path != NULL;
    if (!any)
        return;
    fputs("inbound (reports after the 250):\n", out);
    for (size_t i = 0; i < in->listen.n; i++)
        fprintf(out, "  listen          %s\n", in->listen.items[i]);
    if (!in->listen.n)
        fputs("  listen          none in this process (another one must listen)\n", out);
    fprintf(out, "  secret          from %s\n", in->secret_file ? in->secret_file : "-");
    fprintf(out, "  limits          %" PRIu32 " bytes, %" PRIu32 " connections, %" PRIu32
                 "/s, timeout %" PRId64 " ms, index kept %" PRId64 " h\n",
            in->max_message_bytes, in->max_connections, in->rate_per_s, in->timeout_ms,
            in->index_ttl_ms / 3600000);
    for (size_t i = 0; i < cfg->n_tenants; i++) {
        const char *d = cfg->tenants[i].return_path;
        if (!d)
            continue;
        bool listed = false;
        for (size_t k = 0; k < in->domains.n; k++)
            listed |= strcmp(in->domains.items[k], d) == 0;
        fprintf(out,
                "  %s: DNS needs  MX %s -> the listener's host; SPF for %s naming the egress IPs "
                "(\"v=spf1 ip4:... -all\")%s\n",
                cfg->tenants[i].name, d, d,
                listed || !in->listen.n ? "" : "; NOT in inbound.domains: this listener refuses it");
    }
    fputc('\n', out);
}

void config_print_effective(const struct config *cfg, FILE *out)
{
    char a[64], b[64], c[300];
    fprintf(out, "config %s\n\n", cfg->path ? cfg->path : "");

    const struct cfg_redis *r = &cfg->redis;
    fputs("redis:\n  url             ", out);
    char url[512];
    fputs(config_url_masked(r->url, url, sizeof url), out);
    fprintf(out, "\n  jobs            %s (group %s)\n  events          %s\n  prefix          %s\n",
            r->jobs, r->group, r->events, r->prefix);
    fprintf(out, "  password        %s\n",
            secret_source(r->password_file, r->password_env, c, sizeof c));
    fprintf(out, "  timeouts        connect %s, command %s\n",
            fmt_duration(r->connect_timeout_ms, a, sizeof a),
            fmt_duration(r->command_timeout_ms, b, sizeof b));
    fprintf(out, "  notes kept      %s\n\n",
            r->events_max_age_ms ? fmt_duration(r->events_max_age_ms, a, sizeof a) : "forever");

    const struct cfg_engine *e = &cfg->engine;
    fprintf(out, "engine:\n  workers         %" PRIu32 "%s\n", e->workers,
            e->workers_auto ? " (auto)" : "");
    fprintf(out, "  ehlo            %s\n  consumer        %s\n", e->ehlo, e->consumer);
    fprintf(out, "  batch           %" PRIu32 "\n  max_inflight    %" PRIu32 " per worker\n",
            e->batch, e->max_inflight);
    fprintf(out, "  claim_idle      %s\n  shutdown_grace  %s\n",
            fmt_duration(e->claim_idle_ms, a, sizeof a),
            fmt_duration(e->shutdown_grace_ms, b, sizeof b));
    fprintf(out, "  idempotency     %s\n", fmt_duration(e->idempotency_window_ms, a, sizeof a));
    fprintf(out, "  forget_consumers %s\n",
            e->forget_consumers_ms ? fmt_duration(e->forget_consumers_ms, a, sizeof a) : "never");
    fprintf(out, "  max_field       %" PRIu32 " bytes\n  max_message     %" PRIu32 " bytes\n",
            e->max_field_bytes, e->max_message_bytes);
    fprintf(out, "  max_reply       %" PRIu32 " bytes\n\n", e->max_reply_bytes);

    fputs("egress:\n", out);
    for (size_t i = 0; i < cfg->n_egress; i++) {
        const struct cfg_egress_pool *p = &cfg->egress[i];
        fprintf(out, "  %-15s ", p->name);
        print_list(out, &p->ips, "(no bind: kernel picks the source address)");
        fprintf(out, "  ehlo %s", p->ehlo);
        fputc('\n', out);
    }
    fputs("\ndns:\n  servers         ", out);
    print_list(out, &cfg->dns.servers, "system resolver");
    fputs("\n\nroutes:\n", out);
    if (cfg->n_routes == 0) fputs("  (none: MX lookup for every domain)\n", out);
    for (size_t i = 0; i < cfg->n_routes; i++) {
        const struct cfg_route *rt = &cfg->routes[i];
        bool v6 = strchr(rt->host, ':') != NULL;
        fprintf(out, "  %-15s %s%s%s:%u\n", rt->pattern, v6 ? "[" : "", rt->host, v6 ? "]" : "",
                rt->port);
    }

    const struct cfg_delivery *d = &cfg->delivery;
    fprintf(out, "\ndelivery:\n  port            %u\n  tls             %s\n", d->port,
            config_tls_policy_name(d->tls));
    fprintf(out, "  ca_file         %s\n  retry           ",
            d->ca_file ? d->ca_file : "(OpenSSL default)");
    for (size_t i = 0; i < d->n_retry; i++)
        fprintf(out, "%s%s", i ? ", " : "", fmt_duration(d->retry_ms[i], a, sizeof a));
    fprintf(out, " (last step repeats)\n  max_age         %s\n",
            fmt_duration(d->max_age_ms, a, sizeof a));
    const struct cfg_timeouts *t = &d->timeouts;
    char t1[32], t2[32], t3[32], t4[32], t5[32], t6[32];
    fprintf(out,
            "  timeouts        connect %s, banner %s, command %s, data_block %s, data_end %s, "
            "idle %s\n\n",
            fmt_duration(t->connect_ms, t1, sizeof t1), fmt_duration(t->banner_ms, t2, sizeof t2),
            fmt_duration(t->command_ms, t3, sizeof t3),
            fmt_duration(t->data_block_ms, t4, sizeof t4),
            fmt_duration(t->data_end_ms, t5, sizeof t5), fmt_duration(t->idle_ms, t6, sizeof t6));

    fputs("providers:\n", out);
    for (size_t i = 0; i < cfg->n_providers; i++) {
        const struct cfg_provider *p = &cfg->providers[i];
        fprintf(out, "  %s:\n    mx              ", p->name);
        print_list(out, &p->mx, strcmp(p->name, "default") == 0 ? "(every other domain)" : "-");
        fprintf(out,
                "\n    limits          %" PRIu32 " connections per IP, rate %s, %" PRIu32
                " messages per connection, %s\n",
                p->connections, fmt_rate(&p->rate, a, sizeof a), p->messages_per_connection,
                p->per_site ? "per destination site" : "pooled over the provider");
        print_tls(out, p->tls, d);
    }

    fputs("\nrecipients:\n  limits          ", out);
    if (cfg->recipients.n_limits == 0) fputs("none", out);
    for (size_t i = 0; i < cfg->recipients.n_limits; i++)
        fprintf(out, "%s%s", i ? ", " : "", fmt_rate(&cfg->recipients.limits[i], a, sizeof a));
    if (cfg->recipients.n_limits) fputs(" (sliding windows)", out);
    fputs("\n  exempt          ", out);
    print_exempt(out, cfg->recipients.exempt_mask);
    fprintf(out, "\n  policy          %s\n\n", config_rcpt_policy_name(cfg->recipients.over_limit));

    const struct cfg_reputation *rep = &cfg->reputation;
    fprintf(out, "reputation (scales each egress IP x provider's rate and connections):\n"
                 "  factor          %.2f..%.2f, +%.0f%% (doubling) after each clean %s, "
                 "x%.2f x accepted share per %s with throttle signals\n",
            rep->min, rep->max, rep->increase * 100, fmt_duration(rep->interval_ms, a, sizeof a),
            rep->decrease, fmt_duration(rep->window_ms, b, sizeof b));
    fprintf(out, "  floor           %s\n",
            rep->min_rate.count ? fmt_rate(&rep->min_rate, a, sizeof a) : "none");
    for (size_t i = 0; i < rep->n_rules; i++) {
        const struct cfg_rep_rule *rr = &rep->rules[i];
        fprintf(out, "  %zu. /%s/i -> %s", i + 1, rr->match, config_rep_action_name(rr->action));
        if (rr->action == CFG_REP_SUSPEND)
            fprintf(out, " %s", fmt_duration(rr->suspend_ms, a, sizeof a));
        fputc('\n', out);
    }
    fputc('\n', out);
    if (cfg->n_warmup) {
        fputs("warmup (messages per UTC day from that IP):\n", out);
        int64_t today = (int64_t)time(NULL) / 86400;
        for (size_t i = 0; i < cfg->n_warmup; i++) {
            const struct cfg_warmup *wu = &cfg->warmup[i];
            int64_t day_no = 0;
            int64_t cap = config_warmup_cap(cfg, wu->ip, today, &day_no);
            fprintf(out, "  %-15s day %" PRId64 " of %zu today: ", wu->ip, day_no, wu->n_schedule);
            if (cap >= 0)
                fprintf(out, "cap %" PRId64 "\n", cap);
            else
                fputs("no cap (schedule done)\n", out);
        }
        fputc('\n', out);
    }
    if (cfg->metrics.listen)
        fprintf(out, "metrics: http://%s/metrics (bearer token: %s)\n\n", cfg->metrics.listen,
                secret_source(cfg->metrics.token_file, NULL, c, sizeof c));

    print_inbound(cfg, out);
    if (cfg->unsubscribe.base_url)
        fprintf(out, "unsubscribe: links %s/u/<token>, valid %" PRId64 "d, listener %s\n\n",
                cfg->unsubscribe.base_url, cfg->unsubscribe.max_age_ms / 86400000,
                cfg->unsubscribe.listen ? cfg->unsubscribe.listen : "none in this process");

    fprintf(out, "bounce_rules: %zu (then the built-in rules)\n", cfg->n_bounce_rules);
    for (size_t i = 0; i < cfg->n_bounce_rules; i++) {
        const struct cfg_bounce_rule *br = &cfg->bounce_rules[i];
        fprintf(out, "  %zu. /%s/i%s%s -> %s\n", i + 1, br->match, br->code ? " code " : "",
                br->code ? br->code : "", br->category);
    }
    fputc('\n', out);

    fprintf(out, "tenants: %zu\n", cfg->n_tenants);
    for (size_t i = 0; i < cfg->n_tenants; i++) {
        const struct cfg_tenant *tn = &cfg->tenants[i];
        fprintf(out, "  %s:\n    from            %s%s%s%s\n", tn->name,
                tn->from_name ? tn->from_name : "", tn->from_name ? " <" : "", tn->from,
                tn->from_name ? ">" : "");
        if (tn->reply_to) fprintf(out, "    reply_to        %s\n", tn->reply_to);
        fputs("    domains         ", out);
        print_list(out, &tn->domains, "-");
        fputc('\n', out);
        for (size_t k = 0; k < tn->n_dkim; k++) {
            const struct cfg_dkim *dk = &tn->dkim[k];
            /* No algorithm yet only when the keys were not loaded. */
            fprintf(out, "    dkim            %s selector %s domain %s key %s",
                    dk->algorithm ? dk->algorithm : "(the key's)", dk->selector,
                    dk->domain ? dk->domain : "(From domain)", dk->key);
            if (dk->expire_ms) fprintf(out, " expire %s", fmt_duration(dk->expire_ms, a, sizeof a));
            fputc('\n', out);
            if (dk->loaded) print_dkim_txt(out, dk, tn);
        }
        if (tn->n_dkim == 0) fputs("    dkim            none\n", out);
        if (tn->relay.host) {
            fprintf(out, "    relay           %s:%u tls %s", tn->relay.host, tn->relay.port,
                    config_relay_tls_name(tn->relay.tls));
            if (tn->relay.user)
                fprintf(
                    out, " user %s password from %s", tn->relay.user,
                    secret_source(tn->relay.password_file, tn->relay.password_env, c, sizeof c));
            if (tn->relay.insecure_skip_verify)
                fputs(" certificate NOT VERIFIED (insecure_skip_verify)", out);
            else if (tn->relay.tls != CFG_RELAY_TLS_NONE)
                fprintf(out, " certificate verified against %s",
                        tn->relay.ca_file ? tn->relay.ca_file
                        : d->ca_file  ? d->ca_file
                                      : "the system store");
            fputc('\n', out);
        } else {
            fputs("    relay           none (routes, then MX)\n", out);
        }
        print_tls(out, tn->tls, d);
        fprintf(out, "    egress          %s\n", tn->egress);
        if (tn->return_path)
            fprintf(out, "    return_path     b+<token>@%s (VERP: late bounces come back to herald)\n",
                    tn->return_path);
        fprintf(out, "    rate            %s, weight %" PRIu32 ", max_age %s\n",
                fmt_rate(&tn->rate, a, sizeof a), tn->weight,
                fmt_duration(tn->max_age_ms, b, sizeof b));
        fprintf(out, "    from_fallback   %s\n", config_from_fallback_name(tn->from_fallback));
        if (tn->one_click_unsubscribe)
            fprintf(out, "    one_click_unsubscribe yes (%s/u/<token>)\n",
                    cfg->unsubscribe.base_url);
        for (size_t k = 0; k < tn->n_templates; k++) {
            const struct cfg_template *tp = &tn->templates[k];
            fprintf(out, "    template %-7s subject \"%s\"%s%s%s%s\n", tp->name, tp->subject,
                    tp->text_path ? ", text " : "", tp->text_path ? tp->text_path : "",
                    tp->html_path ? ", html " : "", tp->html_path ? tp->html_path : "");
        }
    }
    const struct cfg_addresses *ad = &cfg->addresses;
    fprintf(out, "addresses: typo_policy %s, %zu provider domains checked for typos\n",
            config_typo_policy_name(ad->typo_policy), ad->typo_domains.n);
    fprintf(out, "sender: %s, SPF re-checked every %s\n",
            cfg->sender.address ? cfg->sender.address : "(none)",
            fmt_duration(cfg->sender.spf_recheck_ms, a, sizeof a));
    fputs("dnsbl: ", out);
    print_list(out, &cfg->dnsbl, "none");
    fputc('\n', out);
}
