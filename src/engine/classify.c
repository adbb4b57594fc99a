/* Reply classification: the enhanced status code decides first, the reply
 * text second. Kept deliberately small here; the rule table grows with the
 * bounce-handling work. */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "herald/engine.h"

static bool text_has(const char *text, const char *needle)
{
    return strcasestr(text, needle) != NULL;
}

const char *classify_result(const struct smtp_result *r)
{
    const char *t = r->reply;
    if (r->outcome == SMTP_OUT_OK)
        return "";
    /* Refusals of the connection's security are the operator's to fix,
     * whatever code the server used. */
    if (r->stage == SMTP_STAGE_TLS)
        return "tls";
    if (r->stage == SMTP_STAGE_AUTH)
        return "auth";
    if (r->outcome == SMTP_OUT_NETFAIL) {
        if (text_has(t, "timed out") || text_has(t, "timeout"))
            return "timeout";
        if (text_has(t, "protocol"))
            return "protocol";
        return "network";
    }
    int klass, subject, detail;
    if (r->enhanced[0] && sscanf(r->enhanced, "%d.%d.%d", &klass, &subject, &detail) == 3) {
        if (subject == 1 && (detail == 0 || detail == 1 || detail == 3 || detail == 6))
            return "bad-mailbox";
        if (subject == 1 && (detail == 2 || detail == 10))
            return "bad-domain";
        if (subject == 2 && detail == 2)
            return "quota";
        if (subject == 7) {
            if (text_has(t, "greylist") || text_has(t, "graylist") ||
                (r->code == 451 && detail == 1))
                return "greylist";
            if (text_has(t, "spam") || text_has(t, "blocked") || text_has(t, "blacklist") ||
                text_has(t, "blocklist"))
                return "spam-block";
            if (text_has(t, "rate") || text_has(t, "too many"))
                return "rate-limit";
            return "policy";
        }
        if (subject == 4 && detail == 5)
            return "rate-limit";
    }
    if (text_has(t, "greylist") || text_has(t, "graylist"))
        return "greylist";
    if (r->code == 421 || text_has(t, "rate limit") || text_has(t, "too many"))
        return "rate-limit";
    if (text_has(t, "user unknown") || text_has(t, "no such user") ||
        text_has(t, "mailbox unavailable") || text_has(t, "does not exist"))
        return "bad-mailbox";
    if (text_has(t, "quota") || text_has(t, "mailbox full"))
        return "quota";
    if (text_has(t, "spam"))
        return "spam-block";
    return "other";
}
