#include <stdio.h>
#include <string.h>

#include "check.h"
#include "herald/engine.h"

static const char *cat(enum smtp_outcome o, int code, const char *enh, const char *text)
{
    static struct smtp_result r;
    memset(&r, 0, sizeof r);
    r.outcome = o;
    r.code = code;
    snprintf(r.enhanced, sizeof r.enhanced, "%s", enh);
    snprintf(r.reply, sizeof r.reply, "%s", text);
    return classify_result(&r);
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
    CHECK_EQ_STR(cat(SMTP_OUT_NETFAIL, 0, "", "timed out in state DATA"), "timeout");
    CHECK_EQ_STR(cat(SMTP_OUT_NETFAIL, 0, "", "connect failed: Connection refused"), "network");
    CHECK_EQ_STR(cat(SMTP_OUT_NETFAIL, 0, "", "protocol violation: reply before command"),
                 "protocol");
    CHECK_EQ_STR(cat(SMTP_OUT_PERMFAIL, 550, "", "No such user here"), "bad-mailbox");
    CHECK_EQ_STR(cat(SMTP_OUT_PERMFAIL, 554, "", "transaction failed"), "other");
    return check_report("test_classify");
}
