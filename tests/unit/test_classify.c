#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "herald/config.h"
#include "herald/engine.h"

static const char *cat_err(enum smtp_outcome o, int code, const char *enh, const char *text,
                           int err)
{
    static struct smtp_result r;
    memset(&r, 0, sizeof r);
    r.outcome = o;
    r.err = err;
    r.code = code;
    snprintf(r.enhanced, sizeof r.enhanced, "%s", enh);
    snprintf(r.reply, sizeof r.reply, "%s", text);
    return classify_result(&r);
}

static const char *cat(enum smtp_outcome o, int code, const char *enh, const char *text)
{
    return cat_err(o, code, enh, text, 0);
}

int main(void)
{
    CHECK_EQ_STR(cat(SMTP_OUT_PERMFAIL, 550, "5.1.1", "user unknown"), "bad-mailbox");
    CHECK_EQ_STR(cat(SMTP_OUT_PERMFAIL, 550, "5.1.10", "null MX"), "bad-domain");
    CHECK_EQ_STR(cat(SMTP_OUT_PERMFAIL, 552, "5.2.2", "mailbox full"), "quota");
    CHECK_EQ_STR(cat(SMTP_OUT_TEMPFAIL, 451, "4.7.1", "Greylisted, try later"), "greylist");
    CHECK_EQ_STR(cat(SMTP_OUT_PERMFAIL, 554, "5.7.1", "blocked as spam"), "spam-block");
    CHECK_EQ_STR(cat(SMTP_OUT_PERMFAIL, 550, "5.7.26", "DMARC policy"), "policy");
    CHECK_EQ_STR(cat(SMTP_OUT_TEMPFAIL, 421, "4.7.0", "Try again later, too many messages"),
                 "rate-limit");
    CHECK_EQ_STR(cat(SMTP_OUT_TEMPFAIL, 421, "", "closing"), "rate-limit");
    /* herald's own failures: the kind decides, never the words (a host
     * named mx.classlink.com contains "ssl", one named timeout.example
     * "timeout"). */
    CHECK_EQ_STR(cat_err(SMTP_OUT_NETFAIL, 0, "", "timed out in state DATA", -HERR_TIMEOUT),
                 "timeout");
    CHECK_EQ_STR(cat_err(SMTP_OUT_NETFAIL, 0, "", "connect failed: Connection refused",
                         -ECONNREFUSED),
                 "network");
    CHECK_EQ_STR(cat_err(SMTP_OUT_NETFAIL, 0, "", "protocol violation: reply before command",
                         -HERR_PROTOCOL),
                 "protocol");
    CHECK_EQ_STR(cat_err(SMTP_OUT_NETFAIL, 0, "",
                         "connect to mx.classlink.com [192.0.2.1]:25 failed: Connection refused",
                         -ECONNREFUSED),
                 "network");
    CHECK_EQ_STR(cat_err(SMTP_OUT_NETFAIL, 0, "",
                         "connect to timeout.example [192.0.2.1]:25 failed: Network unreachable",
                         -ENETUNREACH),
                 "network");
    CHECK_EQ_STR(cat_err(SMTP_OUT_NETFAIL, 0, "", "TLS closed by server", -HERR_TLS), "tls");
    CHECK_EQ_STR(cat(SMTP_OUT_PERMFAIL, 550, "", "No such user here"), "bad-mailbox");
    CHECK_EQ_STR(cat(SMTP_OUT_PERMFAIL, 554, "", "transaction failed"), "other");

    /* Large providers' wordings. */
    CHECK_EQ_STR(cat(SMTP_OUT_PERMFAIL, 550, "5.1.1",
                     "The email account that you tried to reach does not exist. Please try "
                     "double-checking the recipient's email address for typos"),
                 "bad-mailbox");
    CHECK_EQ_STR(cat(SMTP_OUT_PERMFAIL, 550, "", "NoSuchUser"), "bad-mailbox");
    CHECK_EQ_STR(cat(SMTP_OUT_PERMFAIL, 550, "5.5.0",
                     "Requested action not taken: mailbox unavailable"),
                 "bad-mailbox");
    /* Outlook answers 5.1.10 for an unknown mailbox: the wording wins. */
    CHECK_EQ_STR(cat(SMTP_OUT_PERMFAIL, 550, "5.1.10",
                     "RESOLVER.ADR.RecipNotFound; not found"),
                 "bad-mailbox");
    CHECK_EQ_STR(cat(SMTP_OUT_PERMFAIL, 554, "",
                     "delivery error: dd This user doesn't have a yahoo.com account"),
                 "bad-mailbox");
    CHECK_EQ_STR(cat(SMTP_OUT_PERMFAIL, 552, "", "1 Requested mail action aborted, mailbox full"),
                 "quota");
    CHECK_EQ_STR(cat(SMTP_OUT_TEMPFAIL, 421, "4.7.0",
                     "[TSS04] Messages from 1.2.3.4 temporarily deferred due to unexpected "
                     "volume or user complaints"),
                 "rate-limit");
    CHECK_EQ_STR(cat(SMTP_OUT_TEMPFAIL, 421, "4.7.0", "Our system has detected ... rate limited"),
                 "rate-limit");
    CHECK_EQ_STR(cat(SMTP_OUT_PERMFAIL, 554, "5.7.1",
                     "Service unavailable; Client host [1.2.3.4] listed by zen.spamhaus.org"),
                 "spam-block");
    CHECK_EQ_STR(cat(SMTP_OUT_PERMFAIL, 550, "5.7.1", "Client host listed at bl.example"),
                 "spam-block");
    CHECK_EQ_STR(cat(SMTP_OUT_PERMFAIL, 530, "5.7.0", "Must issue a STARTTLS command first"),
                 "tls");
    CHECK_EQ_STR(cat(SMTP_OUT_PERMFAIL, 530, "", "TLS required for this recipient"), "tls");
    /* "Greylisted" contains "listed": still greylisting. */
    CHECK_EQ_STR(cat(SMTP_OUT_TEMPFAIL, 450, "4.2.0", "Recipient greylisted, retry"),
                 "greylist");
    /* Domino's unknown user says "not listed": the 5.1.1 code decides. */
    CHECK_EQ_STR(cat(SMTP_OUT_PERMFAIL, 550, "5.1.1", "User not listed in Domino Directory"),
                 "bad-mailbox");
    /* Any failure during the TLS stage is the operator's to fix. */
    static struct smtp_result tls_stage = {.outcome = SMTP_OUT_NETFAIL, .stage = SMTP_STAGE_TLS};
    CHECK_EQ_STR(classify_result(&tls_stage), "tls");

    /* Configured rules come first, in order; code limits a rule. */
    char err[512] = "";
    struct config *cfg = NULL;
    const char *yaml = "bounce_rules:\n"
                       "  - { match: \"mailbox (is )?disabled\", category: bad-mailbox }\n"
                       "  - { match: \"spamhaus\", code: \"5.7.1\", category: policy }\n"
                       "  - { match: \"^try (again|later)\", category: rate-limit }\n";
    CHECK_EQ_INT(config_load_string("t.yaml", yaml, strlen(yaml), &cfg, err, sizeof err), 0);
    CHECK_EQ_STR(err, "");
    if (cfg) {
        struct smtp_result r;
        memset(&r, 0, sizeof r);
        r.outcome = SMTP_OUT_PERMFAIL;
        r.code = 550;
        snprintf(r.enhanced, sizeof r.enhanced, "5.2.1");
        snprintf(r.reply, sizeof r.reply, "The MAILBOX IS Disabled");
        CHECK_EQ_STR(classify_reply(cfg, &r), "bad-mailbox");
        CHECK_EQ_STR(classify_reply(NULL, &r), "other");
        snprintf(r.enhanced, sizeof r.enhanced, "5.7.1");
        snprintf(r.reply, sizeof r.reply, "listed by zen.spamhaus.org");
        CHECK_EQ_STR(classify_reply(cfg, &r), "policy");
        snprintf(r.enhanced, sizeof r.enhanced, "5.7.10"); /* "5.7.1" is not a prefix of it */
        CHECK_EQ_STR(classify_reply(cfg, &r), "spam-block");
        r.outcome = SMTP_OUT_TEMPFAIL;
        r.code = 451;
        r.enhanced[0] = '\0';
        snprintf(r.reply, sizeof r.reply, "Try later please");
        CHECK_EQ_STR(classify_reply(cfg, &r), "rate-limit");
        r.outcome = SMTP_OUT_OK;
        CHECK_EQ_STR(classify_reply(cfg, &r), "");
        config_free(cfg);
    }
    return check_report("test_classify");
}
