/* Reply classification. Order: the operator's `bounce_rules:` (regex over
 * the reply text, optionally limited to an enhanced-code prefix), then the
 * large providers' own wordings (they are more specific than their codes:
 * Outlook says 5.1.10 for an unknown *mailbox*), then the enhanced status
 * code, then generic words in the text. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "herald/config.h"
#include "herald/engine.h"

static bool text_has(const char *text, const char *needle)
{
    return strcasestr(text, needle) != NULL;
}

/* "5.7" matches "5.7.1" and "5.7.26", not "5.71.0". */
static bool code_has_prefix(const char *enhanced, const char *prefix)
{
    size_t n = strlen(prefix);
    return strncmp(enhanced, prefix, n) == 0 && (enhanced[n] == '\0' || enhanced[n] == '.');
}

/* Provider wordings, checked in order (case-insensitive substrings). */
static const struct {
    const char *needle;
    const char *category;
} wordings[] = {
    /* our own refusal of a UTF-8 mailbox where SMTPUTF8 is not offered */
    {"recipient mailbox is non-ascii", "bad-mailbox"},
    /* greylisting first: "Greylisted" contains "listed" */
    {"greylist", "greylist"},
    {"graylist", "greylist"},
    /* Gmail */
    {"the email account that you tried to reach does not exist", "bad-mailbox"},
    {"nosuchuser", "bad-mailbox"},
    {"must issue a starttls", "tls"},
    /* Outlook / Exchange Online */
    {"recipnotfound", "bad-mailbox"},
    {"recipientnotfound", "bad-mailbox"},
    {"requested action not taken: mailbox unavailable", "bad-mailbox"},
    /* Yahoo / AOL */
    {"doesn't have a yahoo.com account", "bad-mailbox"},
    {"user doesn't have a", "bad-mailbox"},
    {"unexpected volume or user complaints", "rate-limit"},
    /* quota */
    {"mailbox full", "quota"},
    {"mailbox is full", "quota"},
    {"over quota", "quota"},
    {"quota exceeded", "quota"},
    {"insufficient system storage", "quota"},
    /* throttling */
    {"rate limited", "rate-limit"},
    {"rate limit", "rate-limit"},
    {"too many connections", "rate-limit"},
    {"too many messages", "rate-limit"},
    /* TLS */
    {"tls required", "tls"},
    {"starttls required", "tls"},
    {"requires tls", "tls"},
    {"encryption required", "tls"},
    /* block lists ("listed" alone is checked after the enhanced code:
     * Domino says "5.1.1 ... not listed in Domino Directory") */
    {"spamhaus", "spam-block"},
    {"blocklist", "spam-block"},
    {"blacklist", "spam-block"},
    {"dnsbl", "spam-block"},
};

static const char *builtin(const struct smtp_result *r)
{
    const char *t = r->reply;
    /* Refusals of the connection's security are the operator's to fix,
     * whatever code the server used. */
    if (r->stage == SMTP_STAGE_TLS)
        return "tls";
    if (r->stage == SMTP_STAGE_AUTH)
        return "auth";
    /* herald's own failures: the kind of fault, never words in its own
     * message (a host called mx.classlink.com is not a TLS problem). */
    if (r->outcome == SMTP_OUT_NETFAIL) {
        switch (r->err) {
        case -ETIMEDOUT:
        case -HERR_TIMEOUT:
            return "timeout";
        case -HERR_PROTOCOL:
        case -HERR_TOO_LONG:
            return "protocol";
        case -HERR_TLS:
            return "tls";
        default:
            return "network";
        }
    }
    for (size_t i = 0; i < HERALD_ARRAY_LEN(wordings); i++)
        if (text_has(t, wordings[i].needle))
            return wordings[i].category;
    int klass, subject, detail;
    if (r->enhanced[0] && sscanf(r->enhanced, "%d.%d.%d", &klass, &subject, &detail) == 3) {
        if (subject == 1 && (detail == 0 || detail == 1 || detail == 3 || detail == 6))
            return "bad-mailbox";
        if (subject == 1 && (detail == 2 || detail == 10))
            return "bad-domain";
        if (subject == 2 && detail == 2)
            return "quota";
        if (subject == 7) {
            if (r->code == 451 && detail == 1)
                return "greylist";
            if (text_has(t, "spam") || text_has(t, "blocked") || text_has(t, "listed"))
                return "spam-block";
            if (text_has(t, "rate") || text_has(t, "too many"))
                return "rate-limit";
            return "policy";
        }
        if (subject == 4 && detail == 5)
            return "rate-limit";
    }
    if (r->code == 421 || text_has(t, "too many"))
        return "rate-limit";
    if (text_has(t, "user unknown") || text_has(t, "no such user") ||
        text_has(t, "mailbox unavailable") || text_has(t, "does not exist"))
        return "bad-mailbox";
    if (text_has(t, "quota"))
        return "quota";
    if (text_has(t, "spam") || text_has(t, "listed"))
        return "spam-block";
    return "other";
}

const char *classify_reply(const struct config *cfg, const struct smtp_result *r)
{
    if (r->outcome == SMTP_OUT_OK)
        return "";
    if (cfg) {
        for (size_t i = 0; i < cfg->n_bounce_rules; i++) {
            const struct cfg_bounce_rule *b = &cfg->bounce_rules[i];
            if (b->code && !code_has_prefix(r->enhanced, b->code))
                continue;
            if (b->compiled && regexec(&b->re, r->reply, 0, NULL, 0) == 0)
                return b->category;
        }
    }
    return builtin(r);
}

const char *classify_result(const struct smtp_result *r)
{
    return classify_reply(NULL, r);
}
