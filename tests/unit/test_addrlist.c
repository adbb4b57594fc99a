/* The RFC 5322 address-list reader behind raw From/Sender checks: what
 * each value holds (mailboxes, groups, domains), and values that are not
 * address lists at all. */
#include <string.h>

#include "check.h"
#include "herald/job.h"

struct want {
    const char *value;
    int rc;
    size_t mailboxes, groups;
    const char *domains[3];
};

static const struct want cases[] = {
    {"a@acme.test", 0, 1, 0, {"acme.test"}},
    {"  Acme <Reminders@ACME.Test>  ", 0, 1, 0, {"acme.test"}},
    {"\"Front, Desk\" <a@acme.test>", 0, 1, 0, {"acme.test"}},
    {"\"x@acme.test\" <ceo@victim.example>", 0, 1, 0, {"victim.example"}},
    {"ceo@victim.example, <x@acme.test>", 0, 2, 0, {"victim.example", "acme.test"}},
    {"ceo@victim.example (<x@acme.test>)", 0, 1, 0, {"victim.example"}},
    {"(comment (nested \\) ) here) a@acme.test", 0, 1, 0, {"acme.test"}},
    {"a@acme.test (x@evil.test)", 0, 1, 0, {"acme.test"}},
    {"=?utf-8?q?Caf=C3=A9?= <a@acme.test>", 0, 1, 0, {"acme.test"}},
    {"John Q. Public <jq@acme.test>", 0, 1, 0, {"acme.test"}},
    {"\"quoted local\"@acme.test", 0, 1, 0, {"acme.test"}},
    {"first.last@sub . acme.test", 0, 1, 0, {"sub.acme.test"}},
    {"Ann\r\n <a@acme.test>", 0, 1, 0, {"acme.test"}},
    {"<@relay.example,@b.example:a@acme.test>", 0, 1, 0, {"acme.test"}},
    {"a@[192.0.2.1]", 0, 1, 0, {"[192.0.2.1]"}},
    {"Desk: a@acme.test, b@other.test;", 0, 2, 1, {"acme.test", "other.test"}},
    {"undisclosed-recipients:;", 0, 0, 1, {0}},
    {"a@acme.test, , b@acme.test", 0, 2, 0, {"acme.test", "acme.test"}},
    {"Team: a@x.test;, c@y.test", 0, 2, 1, {"x.test", "y.test"}},
    {"", -HERR_MALFORMED, 0, 0, {0}},
    {"   ", -HERR_MALFORMED, 0, 0, {0}},
    {"Front Desk", -HERR_MALFORMED, 0, 0, {0}},
    {"<a@acme.test", -HERR_MALFORMED, 0, 0, {0}},
    {"a@acme.test>", -HERR_MALFORMED, 0, 0, {0}},
    {"a@", -HERR_MALFORMED, 0, 0, {0}},
    {"@acme.test", -HERR_MALFORMED, 0, 0, {0}},
    {"a@acme..test", -HERR_MALFORMED, 0, 0, {0}},
    {"a@acme.test (unclosed", -HERR_MALFORMED, 0, 0, {0}},
    {"\"unclosed <a@acme.test>", -HERR_MALFORMED, 0, 0, {0}},
    {"a@[192.0.2.1", -HERR_MALFORMED, 0, 0, {0}},
    {"A: B: a@x.test;;", -HERR_MALFORMED, 0, 0, {0}},
    {"Desk: a@x.test", -HERR_MALFORMED, 0, 0, {0}},
    {"a@acme.test b@evil.test", -HERR_MALFORMED, 0, 0, {0}},
    {"a@acme.test; b@evil.test", -HERR_MALFORMED, 0, 0, {0}},
    {"x <a@acme.test> <b@evil.test>", -HERR_MALFORMED, 0, 0, {0}},
};

static void test_cases(void)
{
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct want *w = &cases[i];
        struct addrlist l;
        int rc = addrlist_parse(w->value, strlen(w->value), &l);
        if (rc != w->rc) fprintf(stderr, "case %zu %s: rc %d, want %d\n", i, w->value, rc, w->rc);
        CHECK_EQ_INT(rc, w->rc);
        if (rc || w->rc) continue;
        CHECK_EQ_INT(l.n_mailboxes, w->mailboxes);
        CHECK_EQ_INT(l.n_groups, w->groups);
        for (size_t k = 0; k < w->mailboxes && k < 3; k++)
            CHECK_EQ_STR(l.domains[k], w->domains[k]);
    }
}

static void test_limits(void)
{
    /* Comments nest only so deep; a domain over 255 bytes is refused. */
    char deep[200];
    size_t n = 0;
    for (; n < 40; n++)
        deep[n] = '(';
    for (size_t k = 0; k < 40; k++)
        deep[n++] = ')';
    memcpy(deep + n, " a@b.test", 10);
    struct addrlist l;
    CHECK_EQ_INT(addrlist_parse(deep, strlen(deep), &l), -HERR_MALFORMED);
    char big[400] = "a@";
    memset(big + 2, 'x', 300);
    big[302] = '\0';
    CHECK_EQ_INT(addrlist_parse(big, strlen(big), &l), -HERR_TOO_LONG);
    /* More mailboxes than are kept: counted, the first ones kept. */
    char many[512] = "";
    for (int i = 0; i < 12; i++)
        strcat(many, i ? ", m@d.test" : "m@first.test");
    CHECK_EQ_INT(addrlist_parse(many, strlen(many), &l), 0);
    CHECK_EQ_INT(l.n_mailboxes, 12);
    CHECK_EQ_STR(l.domains[0], "first.test");
}

int main(void)
{
    test_cases();
    test_limits();
    return check_report("test_addrlist");
}
